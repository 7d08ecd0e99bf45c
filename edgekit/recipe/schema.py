"""The whole recipe: the sections, the stages as a discriminated union on `kind` built from
the stage registry, the targets from the runtime registry, and the checks that span sections
(stage order, artifact names, targets that can run every artifact, saturation on deploy CPUs)."""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator, model_validator

from edgekit.core.strict import Strict
from edgekit.recipe.sections import (
    NAME_RE,
    AccuracySpec,
    DataSection,
    DeploySpec,
    GateSpec,
    InputSpec,
    ModelSpec,
    ProfileSpec,
    VerifySpec,
)
from edgekit.runtimes import ort
from edgekit.runtimes import registry as runtimes
from edgekit.stages import registry as stage_registry


def _known_runtime(name: str) -> str:
    """Read at validation time, so a runtime registered by a plugin is a valid target."""
    allowed = runtimes.names(deployable=True)
    if name not in allowed:
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"got {name!r}{hint}; allowed: {', '.join(allowed)}")
    return name


@lru_cache(maxsize=1)
def stage_union() -> Any:
    configs = tuple(info.load().Config for info in stage_registry.REGISTRY.values())
    return Annotated[Union[configs], Field(discriminator="kind")]  # type: ignore[valid-type]


def lm_stage_kinds() -> list[str]:
    return [k for k, info in stage_registry.REGISTRY.items() if info.side == "lm" or info.lm_float]


def _lm_order(stages: list[Any]) -> None:
    """Stages that change a causal LM's float weights (prune.depth, finetune.lm) come before
    anything that quantizes or exports it: those read the model as the float stages left it."""
    seen_other = None
    for i, s in enumerate(stages):
        if stage_registry.get(s.kind).lm_float:
            if seen_other is not None:
                raise ValueError(f"stages[{i}] ({s.kind}): it changes the float model, so it goes before "
                                 f"stages[{seen_other}] ({stages[seen_other].kind}), which reads that model")
        elif seen_other is None:
            seen_other = i


def _weight_only_order(stages: list[Any]) -> None:
    """quantize.weight_only hands its integers to the generation targets after it: it must come
    first, once, with at least one integer target to read it, and no target may ask to quantize
    those layers again in its own way."""
    kinds = [s.kind for s in stages]
    if "quantize.weight_only" not in kinds:
        return
    i = kinds.index("quantize.weight_only")
    first = next(j for j, k in enumerate(kinds) if not stage_registry.get(k).lm_float)
    if kinds.count("quantize.weight_only") > 1 or i != first:
        raise ValueError(f"stages[{i if i != first else kinds.index('quantize.weight_only', i + 1)}] "
                         "(quantize.weight_only): give one, before the targets (after prune.depth / finetune.lm "
                         "only): the generation targets after it place its integers")
    readers = [(j, s) for j, s in enumerate(stages) if getattr(s, "reads_weight_only", lambda: False)()]
    if not readers:
        raise ValueError("stages[0] (quantize.weight_only): no target after it has integer weights to take its "
                         "result (target.onnxruntime-genai precision int4 / int8, or target.openvino-genai weights "
                         "int4_* / int8_*)")
    for j, s in readers:
        clash = s.weight_only_conflict()
        if clash:
            raise ValueError(f"stages[{j}] ({s.kind}): {clash}; after quantize.weight_only the layers keep its "
                             "integers (remove the field)")


def recipe_model() -> type[BaseModel]:
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
        targets: list[Annotated[str, AfterValidator(_known_runtime)]] = Field([ort.NAME], validate_default=True)
        deploy: DeploySpec = DeploySpec()
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
                runs_on = s.runs_on()
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
                stage_registry.get(k).side in ("onnx", "backend") for k in kinds
            ):
                if "export.onnx" not in kinds:
                    raise ValueError(
                        "stages: onnx-side stages need an 'export.onnx' stage before them "
                        "when the model is a torch model"
                    )
            stage_registry.check_artifact_names(self.model.kind, self.stages)
            sides = [stage_registry.get(k).side for k in kinds]
            lm_kinds = [k for k, side in zip(kinds, sides) if side == "lm"]
            if lm_kinds:
                others = [k for k, side in zip(kinds, sides) if side != "lm" and not stage_registry.get(k).lm_float]
                if others:
                    raise ValueError(f"stages: {', '.join(others)} cannot be combined with {lm_kinds[0]} "
                                     "(a causal LM goes to its generation targets from its source directory); "
                                     f"allowed with it: {', '.join(lm_stage_kinds())}")
                _lm_order(self.stages)
                _weight_only_order(self.stages)
                if self.model.kind not in ("hf", "gguf"):
                    raise ValueError(f"stages: {lm_kinds[0]} builds from a causal LM's directory; model: needs hf "
                                     f"(a *ForCausalLM directory) or gguf, not {self.model.kind}")
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

        @model_validator(mode="after")
        def _stages_fit_recipe(self) -> "Recipe":
            """A stage whose settings depend on other stages or on deploy.cpus (finetune.qat trains
            for the quantizer after it) says what does not fit before any work."""
            classes = self.deploy.classes()
            for i, s in enumerate(self.stages):
                check = getattr(s, "recipe_problem", None)
                why = check(self.stages, i, classes) if check else None
                if why:
                    raise ValueError(f"stages[{i}] ({s.kind}): {why}")
            return self

        @model_validator(mode="after")
        def _saturation_safe(self) -> "Recipe":
            """A stage that asks for a scheme known to saturate on one of deploy.cpus is refused
            here, before any work, unless deploy.accept_saturation says the user means it."""
            if self.deploy.accept_saturation:
                return self
            classes = self.deploy.classes()
            for i, s in enumerate(self.stages):
                problem = getattr(s, "saturation_problem", None)
                why = problem(classes) if problem else None
                if why:
                    raise ValueError(f"stages[{i}] ({s.kind}): {why}; choose another setting, narrow "
                                     "deploy.cpus, or set deploy.accept_saturation: true")
            return self

    return Recipe
