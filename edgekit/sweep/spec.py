"""The sweep file: a base recipe, the settings to vary by the recipe's own field paths, the
devices, the objective and the search. Checked completely before anything runs (a typo found
after an hour of builds costs the hour): unknown keys, paths that name nothing in the base
recipe, values the recipe schema refuses and devices nobody defined are one-line errors, exit 2."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from edgekit.core.strict import Strict
from edgekit.errors import RecipeError, UsageError, first_line
from edgekit.sweep import paths

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MINIMIZE = ("latency_p90_ms", "latency_p50_ms", "latency_p99_ms", "size_mb")


class ObjectiveSpec(Strict):
    minimize: Literal["latency_p90_ms", "latency_p50_ms", "latency_p99_ms", "size_mb"] = "latency_p90_ms"
    # constraints a trial must meet to be chosen (it is still recorded, and on the Pareto plot)
    accuracy_drop_max: Optional[float] = Field(None, ge=0)
    fidelity_min: Optional[float] = Field(None, gt=0, le=1)


class SearchSpec(Strict):
    method: Literal["grid", "random", "tpe"] = "grid"
    trials: Optional[int] = Field(None, ge=1, description="random/tpe: how many settings to try")
    seed: int = 0

    @model_validator(mode="after")
    def _trials(self) -> "SearchSpec":
        if self.method == "grid" and self.trials is not None:
            raise ValueError(f"grid tries every combination; trials: {self.trials} would cap it silently "
                             "(use method: random to try a sample)")
        if self.method != "grid" and self.trials is None:
            raise ValueError(f"method {self.method} needs trials: N")
        return self


class SweepSpec(Strict):
    sweep: Literal[1]
    name: str = Field(pattern=NAME_RE, max_length=100)
    description: str = ""
    base: str = Field(min_length=1, description="the base recipe, relative to the sweep file")
    set: dict[str, Any] = Field({}, description="field path -> value, the same for every trial")
    vary: dict[str, list[Any]] = Field(min_length=1)
    devices: list[str] = Field(["local"], min_length=1)
    devices_file: Optional[str] = None
    objective: ObjectiveSpec = ObjectiveSpec()
    search: SearchSpec = SearchSpec()

    @field_validator("vary")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in v.items():
            if not values:
                raise ValueError(f"{path}: give at least one value")
            keys = [json.dumps(x, sort_keys=True) for x in values]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise ValueError(f"{path}: repeated value {twice[0]}")
        return v

    @field_validator("devices")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        twice = sorted({d for d in v if v.count(d) > 1})
        if twice:
            raise ValueError(f"devices must not repeat; repeated: {', '.join(twice)}")
        return v


@dataclass
class Sweep:
    """A validated sweep: the spec, the base recipe (raw mapping and where it lives), the
    parsed paths, the device configs by name, and the sweep file's hash (resume checks it)."""

    spec: SweepSpec
    path: Path
    base_path: Path
    base_data: dict[str, Any]
    vary: dict[str, tuple[paths.Part, ...]]
    devices: dict[str, Any]
    sha256: str

    def space_size(self) -> int:
        return math.prod(len(v) for v in self.spec.vary.values())


@dataclass
class TrialRecipe:
    """One point of the search as a recipe: its YAML text (what is hashed and written) and the
    typed recipe, or the one-line reason the schema refused it."""

    settings: dict[str, Any]
    text: str
    sha256: str
    recipe: Any
    error: Optional[str] = None


def _fields(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


_SECTIONS: dict[str, type[BaseModel]] = {"objective": ObjectiveSpec, "search": SearchSpec}


def _format(source: Path, exc: ValidationError) -> str:
    e = next((x for x in exc.errors() if x["type"] == "extra_forbidden"), exc.errors()[0])
    loc = [str(p) for p in e["loc"]]
    where = ".".join(loc)
    if e["type"] == "extra_forbidden":
        model = _SECTIONS.get(loc[0], SweepSpec) if len(loc) > 1 else SweepSpec
        valid = list(model.model_fields)
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        parent = f"{'.'.join(loc[:-1])}: " if len(loc) > 1 else ""
        return f"{source}: {parent}unknown key {loc[-1]!r}{hint}; allowed keys: {', '.join(valid)}"
    if e["type"] == "missing":
        return f"{source}: {where}: required field is missing"
    if e["type"] == "literal_error":
        return f"{source}: {where}: got {e.get('input')!r}; allowed: {e['ctx']['expected']}"
    msg = e["msg"].removeprefix("Value error, ")
    if not where:
        return f"{source}: {msg}"
    shown = "got " in msg or isinstance(e.get("input"), dict)  # a section's own check names its values
    return f"{source}: {where}: {msg}" + ("" if shown else f"; got {e.get('input')!r:.80}")


def _read_yaml(path: Path, what: str) -> Any:
    if not path.is_file():
        raise RecipeError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}:{where}: invalid YAML: {getattr(exc, 'problem', None) or first_line(exc)}") from None


def build_recipe(sweep: Sweep, settings: dict[str, Any], source: str = "") -> TrialRecipe:
    """The base recipe with `set` and then `settings` applied, as canonical YAML text."""
    from edgekit.recipe import parse_recipe

    data = sweep.base_data
    for p, v in sweep.spec.set.items():
        data = paths.assign(data, paths.parse(p), v)
    for p, v in settings.items():
        data = paths.assign(data, sweep.vary[p], v)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    sha = hashlib.sha256(text.encode()).hexdigest()
    try:
        recipe = parse_recipe(data, source or f"{sweep.path.name} trial")
    except RecipeError as exc:
        return TrialRecipe(dict(settings), text, sha, None, str(exc))
    return TrialRecipe(dict(settings), text, sha, recipe)


def load_sweep(path: str | Path) -> Sweep:
    from edgekit.profile.devices import load_devices
    from edgekit.recipe import load_recipe, parse_recipe

    p = Path(path)
    if p.is_dir():
        raise RecipeError(f"{p}: is a directory; expected a sweep .yaml file")
    data = _read_yaml(p, "sweep file")
    if not isinstance(data, dict):
        raise RecipeError(f"{p}: the sweep file must be a YAML mapping, got {type(data).__name__}")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_format(p, exc)) from None
    base_path = (p.parent / spec.base)
    try:
        base = load_recipe(base_path)
    except RecipeError as exc:
        raise RecipeError(f"{p}: base: {exc}") from None
    base_data = yaml.safe_load(base.text)
    resolved = base.recipe.model_dump(mode="json")  # defaults included: every real field is there

    parsed: dict[str, tuple[paths.Part, ...]] = {}
    for section, items in (("set", spec.set), ("vary", spec.vary)):
        for key in items:
            try:
                parts = paths.parse(key)
                paths.get(resolved, parts)
            except paths.PathError as exc:
                raise RecipeError(f"{p}: {section}: {key!r} does not exist in the base recipe "
                                  f"{spec.base}: {exc}") from None
            if section == "vary":
                if key in spec.set:
                    raise RecipeError(f"{p}: vary: {key!r} is also in set; give it in one of them")
                parsed[key] = parts
    fixed = base_data
    for key, value in spec.set.items():
        fixed = paths.assign(fixed, paths.parse(key), value)
    try:
        parse_recipe(fixed, f"{p}: set")
    except RecipeError as exc:
        raise RecipeError(f"{exc} (the base recipe with set applied)") from None
    for key, values in spec.vary.items():
        for i, v in enumerate(values):
            try:
                parse_recipe(paths.assign(fixed, parsed[key], v), f"{p}: vary.{key}[{i}] = {_short(v)} is refused")
            except RecipeError as exc:
                raise RecipeError(str(exc)) from None
    if spec.search.method == "random" and spec.search.trials > math.prod(len(v) for v in spec.vary.values()):
        n = math.prod(len(v) for v in spec.vary.values())
        raise RecipeError(f"{p}: search.trials: {spec.search.trials} is more than the {n} distinct settings "
                          "vary allows; use method: grid to try them all")
    dev_file = (p.parent / spec.devices_file) if spec.devices_file else None
    try:
        known = load_devices(dev_file)
    except UsageError as exc:
        raise RecipeError(f"{p}: devices_file: {exc}") from None
    for i, name in enumerate(spec.devices):
        if name not in known:
            where = f"in {spec.devices_file}" if dev_file else "(no devices_file given)"
            raise RecipeError(f"{p}: devices[{i}]: {name!r} is not defined {where}; defined: {', '.join(known)}")
    return Sweep(spec=spec, path=p, base_path=base_path.resolve(), base_data=base_data, vary=parsed,
                 devices={n: known[n] for n in spec.devices},
                 sha256=hashlib.sha256(p.read_bytes()).hexdigest())


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def device_slug(name: str) -> str:
    """A device name as a file stem and recipe-name suffix (devices.yaml keys are free text)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "device"
