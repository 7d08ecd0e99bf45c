"""The recipe schema and its loader.

Every model forbids unknown keys; stages are a discriminated union on `kind` built from the
stage registry; any ValidationError becomes one RecipeError line naming the file, the field path
(`stages[1].activations.percentile`), the bad value and what is allowed."""

from __future__ import annotations

import difflib
import hashlib
import re
import typing
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from edgekit import stage as stage_registry
from edgekit.errors import RecipeError, first_line
from edgekit.profile.energy import EnergySpec

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
RUNTIMES = ("onnxruntime", "openvino", "tensorrt")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_patterns(patterns: list[str]) -> list[str]:
    """Per-node settings are keyed by exact name or `re:` regex; a bad regex is a recipe error."""
    for p in patterns:
        if p.startswith("re:"):
            try:
                re.compile(p[3:])
            except re.error as exc:
                raise ValueError(f"invalid regex {p!r}: {exc}") from exc
    return patterns


def matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return pattern == name


class ModelSpec(Strict):
    python: Optional[str] = Field(None, description="entrypoint 'package.module:factory'")
    onnx: Optional[str] = None
    hf: Optional[str] = None
    kwargs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSpec":
        given = [k for k in ("python", "onnx", "hf") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of python, onnx, hf (got {given or 'none'})")
        if self.python and not re.fullmatch(r"[\w.]+:[\w.]+", self.python):
            raise ValueError(f"python entrypoint {self.python!r} must look like 'package.module:factory'")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("python", "onnx", "hf") if getattr(self, k))

    @property
    def ref(self) -> str:
        return getattr(self, self.kind)


class InputSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][\w.:/-]*$")
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    dtype: Literal["float32", "float16", "int64", "int32", "bool"] = "float32"


class DataSpec(Strict):
    builtin: Optional[Literal["digits", "digits_seg", "sentences"]] = None
    npz: Optional[str] = None
    python: Optional[str] = None
    split: Optional[Literal["train", "test", "all"]] = None  # default: train to calibrate, test to evaluate
    samples: Optional[Annotated[int, Field(ge=1)]] = None
    seed: int = 0

    @model_validator(mode="after")
    def _exactly_one(self) -> "DataSpec":
        given = [k for k in ("builtin", "npz", "python") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of builtin, npz, python (got {given or 'none'})")
        return self


class DataSection(Strict):
    calibration: Optional[DataSpec] = None
    evaluation: Optional[DataSpec] = None

    @model_validator(mode="after")
    def _default_splits(self) -> "DataSection":
        """Calibration never sees evaluation samples unless the recipe says so explicitly."""
        if self.calibration is not None and self.calibration.split is None:
            self.calibration.split = "train"
        if self.evaluation is not None and self.evaluation.split is None:
            self.evaluation.split = "test"
        return self


class VerifySpec(Strict):
    cosine_min: float = Field(0.99, gt=0.0, le=1.0)
    max_abs: Optional[float] = Field(None, gt=0.0)
    top1_agreement_min: Optional[float] = Field(None, ge=0.0, le=1.0)
    samples: int = Field(64, ge=1)


class AccuracySpec(Strict):
    metric: Optional[Literal["top1", "token_top1", "cosine_fidelity", "mse"]] = None
    max_drop: Optional[float] = Field(None, ge=0.0)
    evaluator: Optional[str] = Field(None, pattern=r"^[\w.]+:[\w.]+$",
                                     description="'pkg.mod:fn' called as fn(runner, dataset) -> float")
    higher_is_better: bool = True  # direction of the evaluator's score

    @model_validator(mode="after")
    def _one_metric(self) -> "AccuracySpec":
        if self.metric and self.evaluator:
            raise ValueError(f"give metric or evaluator, not both (got metric {self.metric!r} and "
                             f"evaluator {self.evaluator!r})")
        return self


class ProfileSpec(Strict):
    enabled: bool = True
    warmup_s: float = Field(1.0, ge=0.0)
    min_duration_s: float = Field(3.0, ge=0.0)
    min_iters: int = Field(64, ge=1)
    max_duration_s: float = Field(60.0, gt=0.0)
    threads: int = Field(2, ge=1)
    # subprocess: each ONNX Runtime/OpenVINO measurement in a fresh runner process (its own peak
    # RSS, no interference from the build); in_process: on the pipeline's open runner (faster)
    isolation: Literal["subprocess", "in_process"] = "subprocess"
    energy: EnergySpec = EnergySpec()

    @model_validator(mode="after")
    def _bounds(self) -> "ProfileSpec":
        if self.max_duration_s < self.min_duration_s:
            raise ValueError(
                f"max_duration_s {self.max_duration_s} is below min_duration_s {self.min_duration_s}"
            )
        return self


class GateSpec(Strict):
    latency_p90_ms: Optional[float] = Field(None, gt=0)
    latency_p99_ms: Optional[float] = Field(None, gt=0)
    size_mb: Optional[float] = Field(None, gt=0)
    accuracy_drop_max: Optional[float] = Field(None, ge=0)
    fidelity_min: Optional[float] = Field(None, gt=0, le=1)
    peak_rss_mb: Optional[float] = Field(None, gt=0)
    energy_mj_per_inference: Optional[float] = Field(None, gt=0)
    # baseline / A/B: a median slowdown beyond this fraction (after noise) fails the gate
    regression_max: float = Field(0.10, gt=0, le=10)


@lru_cache(maxsize=1)
def stage_union() -> Any:
    configs = tuple(info.load().Config for info in stage_registry.REGISTRY.values())
    return Annotated[Union[configs], Field(discriminator="kind")]  # type: ignore[valid-type]


def _recipe_model() -> type[BaseModel]:
    return _build_recipe_model(stage_union())


@lru_cache(maxsize=1)
def _build_recipe_model(union: Any) -> type[BaseModel]:
    class Recipe(Strict):
        edgekit: Literal[1]
        name: str = Field(pattern=NAME_RE, max_length=100)
        description: str = ""
        model: ModelSpec
        inputs: Optional[list[InputSpec]] = None
        data: DataSection = DataSection()
        stages: list[union] = Field(min_length=1)  # type: ignore[valid-type]
        targets: list[Literal["onnxruntime", "openvino", "tensorrt"]] = Field(["onnxruntime"], validate_default=True)
        verify: VerifySpec = VerifySpec()
        accuracy: AccuracySpec = AccuracySpec()
        profile: ProfileSpec = ProfileSpec()
        gates: GateSpec = GateSpec()

        @field_validator("targets")
        @classmethod
        def _unique_targets(cls, v: list[str], info: ValidationInfo) -> list[str]:
            if len(set(v)) != len(v) or not v:
                raise ValueError("targets must be a non-empty list without repeats")
            # an artifact no target can run would be written but never verified: refuse it now
            for i, s in enumerate(info.data.get("stages") or []):
                runs_on = stage_registry.get(s.kind).runs_on
                if runs_on and not set(runs_on) & set(v):
                    raise ValueError(
                        f"stages[{i}] ({s.kind}) makes artifacts that only {', '.join(runs_on)} can run; "
                        f"add {runs_on[0]} to targets"
                    )
            return v

        @field_validator("inputs")
        @classmethod
        def _unique_inputs(cls, v: Optional[list[InputSpec]]) -> Optional[list[InputSpec]]:
            names = [i.name for i in v or []]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"input names must be unique; repeated: {', '.join(twice)}")
            return v

        @model_validator(mode="after")
        def _export_first(self) -> "Recipe":
            kinds = [s.kind for s in self.stages]
            if kinds.count("export.onnx") > 1:
                raise ValueError("stages: give one 'export.onnx' stage; got "
                                 f"{kinds.count('export.onnx')} (every onnx-side stage reads its output)")
            if self.model.kind != "onnx" and any(
                stage_registry.get(k).side in ("onnx", "target") for k in kinds
            ):
                if "export.onnx" not in kinds:
                    raise ValueError(
                        "stages: onnx-side stages need an 'export.onnx' stage before them "
                        "when the model is a torch model"
                    )
            sides = [stage_registry.get(k).side for k in kinds]
            if "export" in sides:
                i = sides.index("export")
                bad = [kinds[j] for j in range(i) if sides[j] != "torch"]
                late = [kinds[j] for j in range(i + 1, len(kinds)) if sides[j] == "torch"]
                if bad or late:
                    raise ValueError(
                        "stages: torch-side stages must come before export.onnx and onnx-side "
                        f"stages after it (out of order: {bad + late})"
                    )
            return self

    return Recipe


def __getattr__(name: str) -> Any:
    # `from edgekit.recipe import Recipe` works while the union is still built lazily.
    if name == "Recipe":
        return _recipe_model()
    raise AttributeError(name)


# ------------------------------------------------------------------------------------------
# error formatting


def _fields_at(loc: tuple, data: Any) -> tuple[list[str], Any]:
    """The valid keys of the model at `loc` (walking annotations, picking stages by kind)."""
    current: Any = _recipe_model()
    node = data
    for part in loc:
        current = _unwrap(current, node)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                break
            current = field.annotation
            node = node.get(part) if isinstance(node, dict) else None
        else:
            break
    current = _unwrap(current, node)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields), current
    return [], current


def _unwrap(tp: Any, node: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0], node)
    if origin is Union or str(origin) == "types.UnionType":
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if isinstance(node, dict) and "kind" in node:
            for opt in options:
                kf = getattr(opt, "model_fields", {}).get("kind")
                if kf is not None and typing.get_args(kf.annotation) == (node["kind"],):
                    return opt
        return options[0] if len(options) == 1 else tp
    return tp


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


# how pydantic names a plain union's member in an error's loc ("int", "list[int]", ...); no
# recipe field is named like this
_UNION_TAG = re.compile(r"^(int|float|str|bool|none)$|\[")


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in stage_registry.REGISTRY or bool(_UNION_TAG.search(part)))


def _strip_tags(loc: tuple) -> tuple:
    """pydantic inserts the union member's tag into loc: drop it so paths read as the YAML does.
    A stage kind is a tag only right after a list index (`stages[1].finetune`), not a field
    that shares its name (`stages[0].finetune.epochs`)."""
    return tuple(p for i, p in enumerate(loc)
                 if not _is_tag(p) or (p in stage_registry.REGISTRY and not (i and isinstance(loc[i - 1], int))))


def _primary(errors: list[dict]) -> dict:
    """The error worth the one line: an unknown key inside a section (a typo there also shows as
    a missing field, which hides it); within a plain union (`r: int | list[int]`), the branch that
    got furthest (`r[1]` rather than "r is not an int")."""
    nested_typos = [e for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) > 1]
    first = nested_typos[0] if nested_typos else errors[0]
    if any(_is_tag(p) and p not in stage_registry.REGISTRY for p in first["loc"]):
        stem = _strip_tags(first["loc"])
        same = [e for e in errors if _strip_tags(e["loc"])[: len(stem)] == stem]
        first = max(same, key=lambda e: len(_strip_tags(e["loc"])))
    return first


def _one_error(err: dict, data: Any) -> str:
    loc = _strip_tags(err["loc"])
    etype = err["type"]
    value = err.get("input")
    ctx = err.get("ctx", {}) or {}
    if etype == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        valid, _ = _fields_at(parent, data)
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        where = f"{_path(parent)}: " if parent else ""
        return f"{where}unknown key '{key}'{hint}; allowed keys: {', '.join(valid)}"
    if etype in ("union_tag_invalid", "union_tag_not_found"):
        kinds = list(stage_registry.REGISTRY)
        tag = ctx.get("tag", value.get("kind") if isinstance(value, dict) else None)
        if tag is None:
            return f"{_path(loc)}: missing 'kind'; allowed kinds: {', '.join(kinds)}"
        close = difflib.get_close_matches(str(tag), kinds, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{_path(loc)}.kind: unknown stage kind {tag!r}{hint}; allowed kinds: {', '.join(kinds)}"
    if etype == "missing":
        return f"{_path(loc)}: required field is missing"
    if etype == "literal_error":
        return f"{_path(loc)}: got {value!r}; allowed: {ctx.get('expected')}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if not loc:  # a whole-recipe check: its message names the fields and values itself
        return msg
    if "got " in msg or (isinstance(value, (dict, list)) and len(repr(value)) >= 60):
        return f"{_path(loc)}: {msg}"  # the message shows the value already, or it is too long to help
    return f"{_path(loc)}: {msg}; got {value!r}"


def format_validation_error(source: str, exc: ValidationError, data: Any) -> str:
    errors = exc.errors()
    first = _one_error(_primary(errors), data)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {first}{more}"


# ------------------------------------------------------------------------------------------
# loading


class LoadedRecipe(BaseModel):
    """The typed recipe plus where it came from (paths in it resolve against `base_dir`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    recipe: Any
    path: Path
    base_dir: Path
    sha256: str
    text: str


def parse_recipe(data: Any, source: str = "<recipe>") -> Any:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: the recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return _recipe_model().model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(source, exc, data)) from None


def load_recipe(path: str | Path) -> LoadedRecipe:
    p = Path(path)
    if p.is_dir():
        raise RecipeError(f"{p}: is a directory; expected a recipe .yaml file")
    if not p.is_file():
        raise RecipeError(f"{p}: recipe file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{p}: not a text file (byte {exc.start} is not UTF-8); expected a recipe .yaml file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise RecipeError(f"{p}:{where}: invalid YAML: {problem}") from None
    recipe = parse_recipe(data, str(p))
    return LoadedRecipe(
        recipe=recipe,
        path=p.resolve(),
        base_dir=p.resolve().parent,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
    )


def required_extras(recipe: Any) -> list[str]:
    """Extras a recipe needs: its stages', its targets' runtimes, and its model source's."""
    need: list[str] = []
    for s in recipe.stages:
        need += list(stage_registry.get(s.kind).extras)
    runtime_extra = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}
    need += [runtime_extra[t] for t in recipe.targets]
    if recipe.model.kind == "hf":
        need.append("hf")
    module, _, name = (recipe.model.python or "").partition(":")
    if module == "edgekit.models.zoo":
        from edgekit.models.zoo import EXTRAS

        need += list(EXTRAS.get(name, ()))
    for spec in (recipe.data.calibration, recipe.data.evaluation):
        if spec is not None and spec.builtin == "sentences":
            need.append("hf")
    return list(dict.fromkeys(need))
