"""The gate's one entry point: gather the budgets (recipe), the measurements (artifact dir,
profile, baseline) and the A/B pair, and return every check. The CLI only prints and exits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from edgekit.errors import UsageError
from edgekit.gate import GateResult
from edgekit.gate.ab import AbSettings
from edgekit.runtimes import ort


@dataclass
class GateRequest:
    recipe: Optional[Path] = None
    artifact_dir: Optional[Path] = None
    profile: Optional[Path] = None
    baseline: Optional[Path] = None
    ab: Optional[tuple[Path, Path]] = None
    select: list[str] = field(default_factory=list)
    min_effect: Optional[float] = None  # overrides gates.regression_max
    backend: Optional[str] = None
    threads: Optional[int] = None
    ab_settings: AbSettings = AbSettings()


def run_gate(req: GateRequest, tick: Callable[[int], None] = lambda n: None) -> GateResult:
    from edgekit.artifact.manifest import read_manifest
    from edgekit.gate.budgets import check_budgets
    from edgekit.profile.schema import load_profile
    from edgekit.recipe import GateSpec, load_recipe

    recipe = load_recipe(req.recipe).recipe if req.recipe is not None else None
    notes: list[str] = []
    artifact_dir = req.artifact_dir
    if artifact_dir is None and recipe is not None and req.profile is None and req.ab is None:
        artifact_dir = Path("out") / recipe.name
        notes.append(f"artifact: {artifact_dir} (the recipe's default output)")
    manifest = read_manifest(artifact_dir) if artifact_dir is not None else None
    if recipe is not None:
        gates = recipe.gates
    elif manifest is not None:
        gates = GateSpec.model_validate(manifest["recipe"].get("gates", {}))
    else:
        gates = GateSpec()
    profile_path = req.profile
    if profile_path is None and artifact_dir is not None and (artifact_dir / "profile.json").is_file():
        profile_path = artifact_dir / "profile.json"
    profile = load_profile(profile_path) if profile_path is not None else None
    if req.min_effect is not None and req.min_effect <= 0:
        raise UsageError(f"--min-effect {req.min_effect}: must be above 0 (a fraction of the median, e.g. 0.10)")
    min_effect = req.min_effect if req.min_effect is not None else gates.regression_max

    result = GateResult(checks=[], notes=notes)
    if manifest is not None or profile is not None:
        result.checks += check_budgets(gates, manifest, profile, req.select or None)
    if req.baseline is not None:
        if profile is None:
            raise UsageError("--baseline needs a current profile: give ARTIFACT_DIR or --profile FILE")
        from edgekit.gate.baseline import check_baseline

        s = req.ab_settings
        checks, notes = check_baseline(profile, load_profile(req.baseline), req.baseline, min_effect, s.alpha,
                                       s.max_cv, req.select or None)
        result.checks += checks
        result.notes += notes
    if req.ab is not None:
        from edgekit.gate.ab import check_ab, side_from

        inputs = recipe.inputs if recipe is not None else None
        artifact = req.select[0] if len(req.select) == 1 else None
        base, cand = (side_from(p, artifact, inputs) for p in req.ab)
        # by default the recipe's first target that runs the base artifact (an LM recipe's
        # artifacts each run on one of its generation runtimes)
        targets = list(recipe.targets) if recipe is not None else [ort.NAME]
        runtime = req.backend or next((t for t in targets if t in base.runs_on), targets[0])
        threads = req.threads or (recipe.profile.threads if recipe is not None else 2)
        result.checks.append(check_ab(base, cand, runtime, threads, replace(req.ab_settings, min_effect=min_effect), tick))
    if not result.checks:
        raise UsageError("nothing to gate: the recipe sets no gates: budgets and no --baseline or --ab was given")
    return result
