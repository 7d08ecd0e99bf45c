"""quantize.weight_only: data-aware weight-only INT4 / INT8 of a causal LM's linear layers on
the torch model, by Intel Neural Compressor (RTN, GPTQ, AWQ), before the generation targets.

The targets then place these integers in their own graphs (lm_layers, genai_requant.place_layers,
ov_weights) rather than quantize again, so one quantization reaches ONNX Runtime GenAI and
OpenVINO GenAI alike and each target checks the stored bytes equal INC's. The lm_head and the
embeddings stay with each target's own settings (ORT: int8_layers; OpenVINO: backup_mode): INC
leaves the lm_head out by default, and a tied lm_head quantized by a data-aware method would
carry its correction into the embedding table it shares."""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator, Literal, Optional, Union

import numpy as np
from pydantic import Field, PositiveFloat, field_validator, model_validator

from edgekit.core.backends import require, version_of
from edgekit.core.patterns import check_patterns, matches
from edgekit.core.progress import block_ticks
from edgekit.core.strict import Strict
from edgekit.errors import DataError, RecipeError, StageError
from edgekit.sources.lm_shapes import BLOCK_SIZES, causal_lm_of, check_block
from edgekit.quantize import awq
from edgekit.quantize.autoround import AutoRoundSpec
from edgekit.quantize.lm_layers import QLayer, QuantizedLM
from edgekit.quantize.lm_mixed import Choice
from edgekit.quantize.lm_qat import QATSpec
from edgekit.sources import lm_sublayers
from edgekit.sources.causal_lm import save_lm_directory, transformers_quietly
from edgekit.stages.base import Stage, StageConfig, StageRecord
from edgekit.stages.state import ModelState



def _group_size(v: Optional[int]) -> Optional[int]:
    if v is not None and v not in BLOCK_SIZES:
        raise ValueError(f"group_size must be one of {', '.join(map(str, BLOCK_SIZES))} (both runtimes' "
                         f"block sizes), got {v}")
    return v


class LayerBits(Strict):
    match: str = Field(description="a layer's full name (model.layers.0.mlp.down_proj) or re:<regex> matched in full")
    bits: Literal[4, 8, 16] = Field(description="16 keeps the layer float")
    group_size: Optional[int] = Field(None, description="this layer's group; the stage's when unset")

    @field_validator("match")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return check_patterns([v])[0]

    _group = field_validator("group_size")(_group_size)

    def matches(self, name: str) -> bool:
        return matches(self.match, name)


class MixChoice(Strict):
    bits: Literal[4, 8, 16] = Field(description="16 keeps the layer float")
    group_size: int = 64

    _group = field_validator("group_size")(_group_size)

    def choice(self) -> Choice:
        return Choice(self.bits, self.group_size)


DEFAULT_CHOICES = [MixChoice(bits=4, group_size=32), MixChoice(bits=4, group_size=64),
                   MixChoice(bits=4, group_size=128), MixChoice(bits=8, group_size=64)]


class MixedConfig(Strict):
    """Per-layer bits and group chosen under a byte budget from each layer's measured harm."""

    choices: list[MixChoice] = Field(DEFAULT_CHOICES, min_length=1,
                                     description="what a layer may get; a group that does not divide a layer's "
                                                 "inputs is skipped for that layer")
    same_size_as: Optional[MixChoice] = Field(
        None, description="budget: the bytes of every layer at this choice (default: the stage's bits and group)")
    linear_mb: Optional[Union[PositiveFloat, dict[str, PositiveFloat]]] = \
        Field(None, description="budget: megabytes of the quantized linear layers in both targets' storage, or per "
                                "target ({openvino-genai: 60}); a target not named is not held to it")

    @field_validator("linear_mb")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        from edgekit.quantize.lm_mixed import SCALE_BYTES

        bad = [t for t in v if t not in SCALE_BYTES] if isinstance(v, dict) else []
        if bad:
            raise ValueError(f"{bad[0]!r} is not a generation target; allowed: {', '.join(SCALE_BYTES)}")
        return v
    windows: int = Field(2, ge=1, description="calibration windows the scan reads (each candidate reruns them)")

    @model_validator(mode="after")
    def _one_budget(self) -> "MixedConfig":
        if self.same_size_as is not None and self.linear_mb is not None:
            raise ValueError("set one budget: same_size_as or linear_mb, not both")
        if self.linear_mb == {}:
            raise ValueError("linear_mb: name at least one target (onnxruntime-genai, openvino-genai) or give one "
                             "number for both")
        return self


class WeightOnlyConfig(StageConfig):
    kind: Literal["quantize.weight_only"]
    algorithm: Literal["rtn", "gptq", "awq", "autoround", "qat"] = Field(
        "gptq", description="rtn: round to nearest (data-free); gptq: error-compensating rounding on calibration text; "
                            "awq: activation-aware input scales and clipping on calibration text (Llama-layout "
                            "families); autoround: each block's rounding and clipping tuned on calibration text "
                            "(auto-round); "
                            "qat: weights and scales trained through the rounding by distillation (docs/llm.md#qat)")
    qat: Optional[QATSpec] = Field(None, description="algorithm qat: its steps and learning rates (defaults if unset)")
    autoround: Optional[AutoRoundSpec] = Field(None, description="algorithm autoround: its steps and batch (defaults "
                                                                 "if unset)")
    bits: Literal[4, 8] = 4
    group_size: int = Field(64, description="weights per scale along each layer's input dimension")
    symmetric: bool = True
    layers: list[LayerBits] = Field([], description="per-layer bits; the first entry that matches a layer wins")
    calibration_windows: Optional[int] = Field(None, ge=1, description="gptq: windows of data.calibration read; all if unset")
    percdamp: float = Field(0.01, gt=0.0, lt=1.0, description="gptq: dampening added to the Hessian's diagonal")
    mixed: Optional[MixedConfig] = Field(
        None, description="choose each layer's bits / group under a byte budget from a sensitivity scan "
                          "(docs/llm.md#mixed-precision); overrides in `layers` stay as given")
    mse_search: Optional[bool] = Field(
        None, description="search each group's scale (shrinking its range) for the least squared weight error; "
                          "unset: on for gptq, off for rtn (docs/llm.md has the measurement)")

    _group = field_validator("group_size")(_group_size)

    @model_validator(mode="after")
    def _qat_only(self) -> "WeightOnlyConfig":
        for own in ("qat", "autoround"):
            if getattr(self, own) is not None and self.algorithm != own:
                raise ValueError(f"{own}: settings for algorithm {own}, but algorithm is {self.algorithm}; remove "
                                 f"{own} or set algorithm: {own}")
        if self.algorithm in ("qat", "autoround") and self.mse_search is not None:
            raise ValueError(f"mse_search: INC's scale search; {self.algorithm} tunes each group's clipping itself")
        return self


def _linear_names(model: Any) -> list[str]:
    import torch

    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] != "lm_head"]


def layer_choices(cfg: WeightOnlyConfig, names: list[str], model: Any = None) -> tuple[dict[str, Choice], set[str]]:
    """Each layer's bits and group, and the layers an override set; an override that matches no
    layer is a recipe error, since a typo would otherwise quantize the layer the user meant to keep."""
    for i, o in enumerate(cfg.layers):
        if not any(o.matches(n) for n in names):
            raise RecipeError(f"layers[{i}].match: {o.match!r} matches no linear layer of this "
                              f"model; its layers are named like {names[0]} (the lm_head and embeddings are the "
                              "targets' to set)")
    out, fixed = {}, set()
    for n in names:
        o = next((o for o in cfg.layers if o.matches(n)), None)
        out[n] = Choice(o.bits if o else cfg.bits, (o.group_size if o else None) or cfg.group_size)
        if o is not None:
            fixed.add(n)
    if model is not None:
        mods = dict(model.named_modules())
        for i, o in enumerate(cfg.layers):
            bad = next((n for n in names if o.matches(n) and out[n].bits != 16
                        and mods[n].in_features % out[n].group), None)
            if bad is not None:
                raise RecipeError(f"layers[{i}].group_size: {out[bad].group} does not divide {bad}'s "
                                  f"{mods[bad].in_features} inputs")
    return out, fixed


def _inc() -> Any:
    """neural_compressor.torch.quantization, imported without its INFO/WARNING lines: it reads
    its level from LOGLEVEL once, at import, and then logs a line per layer."""
    import os

    before = os.environ.get("LOGLEVEL")
    os.environ["LOGLEVEL"] = "ERROR"
    try:
        q = require("neural_compressor.torch.quantization", extra="inc", why="quantize.weight_only")
    finally:
        if before is None:
            os.environ.pop("LOGLEVEL", None)
        else:
            os.environ["LOGLEVEL"] = before
    logging.getLogger("neural_compressor").setLevel(logging.ERROR)
    return q


def _mse_search(cfg: WeightOnlyConfig) -> bool:
    return cfg.algorithm == "gptq" if cfg.mse_search is None else cfg.mse_search


def _inc_config(cfg: WeightOnlyConfig, choices: dict[str, Choice], absorb: Optional[dict[str, Any]] = None) -> Any:
    q = _inc()
    Config = {"gptq": q.GPTQConfig, "awq": q.AWQConfig}.get(cfg.algorithm, q.RTNConfig)
    common: dict[str, Any] = {"use_sym": cfg.symmetric}
    if cfg.algorithm == "awq":  # scales and clipping searched; only where a layer absorbs them (awq.py)
        common.update(use_auto_scale=True, use_auto_clip=True, folding=True, absorb_layer_dict=absorb or {})
    # measured on SmolLM2-135M, int4 g64 sym (docs/llm.md): GPTQ without the search scales a
    # symmetric group by 2·max|w|/15 and clips its largest weight, and lost to plain RTN; with
    # it GPTQ won. RTN with the search lost to RTN without it.
    common["use_mse_search"] = _mse_search(cfg)
    if cfg.algorithm == "gptq":
        common.update(act_order=False, percdamp=cfg.percdamp)  # act_order would need MatMulNBits' g_idx
    config = Config(bits=cfg.bits, group_size=cfg.group_size, **common)
    for name, c in choices.items():
        # float layers are hidden from INC instead (see _hidden)
        if c.bits != 16 and (c.bits, c.group) != (cfg.bits, cfg.group_size):
            config.set_local(re.escape(name) + "$", Config(bits=c.bits, group_size=c.group, **common))
    return config


@contextmanager
def _hidden(model: Any, names: list[str]) -> Iterator[None]:
    """Layers kept float, disguised as a plain function of their weight while INC runs. Why not
    INC's own dtype "fp32" override: its GPTQ (3.10) falls back to the first local config for a
    layer left out of its table (a regex test that is always true), and quantizes it anyway."""
    import torch

    class KeptFloat(torch.nn.Module):
        def __init__(self, linear: Any) -> None:
            super().__init__()
            self.kept = [linear]  # a list: not a child module, so no quantizer finds the Linear

        def forward(self, x: Any) -> Any:
            return self.kept[0](x)

    modules = dict(model.named_modules())
    swapped = []
    for name in names:
        parent, _, attr = name.rpartition(".")
        owner = modules[parent] if parent else model
        swapped.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, KeptFloat(getattr(owner, attr)))
    try:
        yield
    finally:
        for owner, attr, linear in swapped:
            setattr(owner, attr, linear)


def _calibrate(model: Any, windows: list[np.ndarray], state: ModelState, what: str) -> None:
    import torch

    tick = state.progress(f"{what}: reading {len(windows)} calibration windows", len(windows))
    with torch.no_grad():
        for w in windows:
            model(torch.as_tensor(np.asarray(w, dtype=np.int64).reshape(1, -1)))
            tick(1)


def _extract(model: Any) -> dict[str, QLayer]:
    out = {}
    for name, mod in model.named_modules():
        if not hasattr(mod, "unpack") or not hasattr(mod, "qweight"):
            continue
        p = mod.unpack()
        if p.get("g_idx") is not None and not np.array_equal(
                p["g_idx"].numpy(), np.arange(mod.in_features) // mod.group_size):
            raise StageError(f"{name}: neural-compressor reordered its groups (g_idx); no target packs that")
        ints = p["int_weight"].numpy()
        zp = p["zp"]
        zeros = np.full(p["scales"].shape, 2 ** (mod.bits - 1), np.uint8) if zp is None else zp.numpy().astype(np.uint8)
        out[name] = QLayer(ints.astype(np.uint8), p["scales"].numpy().astype(np.float16), zeros, int(mod.bits),
                           int(mod.group_size))
    return out


def _write_directory(lm: Any, layers: dict[str, QLayer], out: Path,
                     changed: Optional[dict[str, np.ndarray]] = None) -> None:
    """The source directory with each quantized layer's weight replaced by its dequantized value
    (and each float weight the algorithm `changed`, by parameter name: AWQ's norms): what both
    targets build their float graph from before the integers go in."""
    import torch

    model = dataclasses.replace(lm).torch_model()
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, q in layers.items():
            modules[name].weight.copy_(torch.from_numpy(q.dequantized()))
        for name, value in (changed or {}).items():
            model.get_parameter(name).copy_(torch.from_numpy(value))
    save_lm_directory(model, lm.directory, out)


def _windows(state: ModelState, n: Optional[int], field: str, what: str) -> list[np.ndarray]:
    calib = state.calibration
    if calib is None or len(calib) == 0:
        raise DataError(f"quantize.weight_only: {what} needs calibration text: set data.calibration in the "
                        "recipe, e.g. {builtin: pydoc_topics, split: train, samples: 16, seq_len: 256}")
    n = n or len(calib)
    if n > len(calib):
        raise RecipeError(f"{field}: {n} is more than the {len(calib)} "
                          "calibration windows; lower it or raise data.calibration.samples")
    return [s["input_ids"] for s in calib.samples[:n]]


def choose_mix(cfg: WeightOnlyConfig, mix: MixedConfig, model: Any, choices: dict[str, Choice], fixed: set[str],
               windows: list[np.ndarray], state: ModelState) -> tuple[dict[str, Choice], dict[str, Any]]:
    """Each layer's choice under the budget, from the scan on the float model, and the record of
    every layer's harm at every choice, the chosen mix and the frontier around its budget."""
    from edgekit.quantize import lm_mixed as mx

    mods = dict(model.named_modules())
    shapes = {n: tuple(mods[n].weight.shape) for n in choices}
    offered = list(dict.fromkeys(c.choice() for c in mix.choices))
    groups = mx.units(list(choices))

    reference = mix.same_size_as.choice() if mix.same_size_as else Choice(cfg.bits, cfg.group_size)
    if mix.linear_mb is None:
        bad = next((n for n in shapes if n not in fixed and reference.bits != 16 and shapes[n][1] % reference.group),
                   None)
        if bad is not None:
            raise RecipeError(f"mixed.same_size_as.group_size: {reference.group} does not divide {bad}'s "
                              f"{shapes[bad][1]} inputs; pick a group every layer takes")
    budget = mx.budget_bytes(shapes, {n: choices[n] for n in fixed}, reference, mix.linear_mb, cfg.symmetric)
    held = list(budget)  # the targets whose storage the budget holds

    def costs(names: list[str], pick: dict[str, Choice]) -> tuple[float, ...]:
        return tuple(sum(mx.layer_bytes(*shapes[n], pick[n], cfg.symmetric, mx.SCALE_BYTES[t]) for n in names)
                     for t in held)

    candidates: dict[int, list[Choice]] = {}
    for u, names in enumerate(groups):
        if any(n in fixed for n in names):
            candidates[u] = []  # an override holds it
            continue
        candidates[u] = [c for c in offered if c.bits == 16 or all(shapes[n][1] % c.group == 0 for n in names)]
        if not candidates[u]:
            raise RecipeError(f"mixed.choices: no group among {', '.join(c.key for c in offered)} divides "
                              f"{names[0]}'s {shapes[names[0]][1]} inputs; add a choice whose group does")
    runs = sum(1 for cs in candidates.values() for c in cs if c.bits != 16)
    t0 = time.perf_counter()
    harm, cached = mx.cached_scan(model, windows, groups, candidates, cfg.symmetric, lambda: state.progress(
        f"mixed precision: each of {len(groups)} layers alone at each choice, on {len(windows)} calibration windows "
        f"({runs} reruns, minutes on a real model; kept for the next run with the same model and windows)", runs))
    options = [[mx.Option(choices[names[0]], 0.0, costs(names, choices))] if not candidates[u] else
               [mx.Option(c, harm[u][c], costs(names, dict.fromkeys(names, c))) for c in candidates[u]]
               for u, names in enumerate(groups)]
    limits = tuple(budget.values())
    pick = mx.choose(options, limits)
    if pick is None:
        least = [sum(min(o.cost[k] for o in opts) for opts in options) for k in range(len(held))]
        k = max(range(len(held)), key=lambda i: least[i] / limits[i])
        raise RecipeError(f"mixed: the budget ({limits[k] / 1e6:.2f} MB of linear layers in {held[k]}'s storage) is "
                          f"below the smallest mix these choices make ({least[k] / 1e6:.2f} MB); raise it or offer "
                          "fewer bits")
    out = dict(choices)
    for u, names in enumerate(groups):
        if candidates[u]:
            out.update(dict.fromkeys(names, options[u][pick[u]].choice))
    every = {t: sum(mx.layer_bytes(*shapes[n], out[n], cfg.symmetric, sb) for n in shapes)
             for t, sb in mx.SCALE_BYTES.items()}
    chosen: dict[str, int] = {}
    for c in out.values():
        chosen[c.key] = chosen.get(c.key, 0) + 1
    record = {
        "scan_s": round(time.perf_counter() - t0, 1), "scan_windows": len(windows), "scan_from_cache": cached,
        "budget_mb": {t: round(b / 1e6, 3) for t, b in budget.items()},
        "predicted_mb": {t: round(b / 1e6, 3) for t, b in every.items()},
        "predicted_kl": float(sum(options[u][i].loss for u, i in enumerate(pick))),
        "chosen": chosen,
        "layers": [{"names": names, "choice": out[names[0]].key,
                    "kl": {c.key: float(f"{harm[u][c]:.4g}") for c in candidates[u]} if candidates[u] else None}
                   for u, names in enumerate(groups)],
        "frontier": [{**f, "mb": dict(zip(held, f["mb"]))} for f in mx.frontier(options, limits)],
    }
    return out, record


class WeightOnly(Stage):
    kind = "quantize.weight_only"
    Config = WeightOnlyConfig

    def apply(self, state: ModelState, cfg: WeightOnlyConfig) -> tuple[ModelState, StageRecord]:
        import json

        lm = causal_lm_of(state, self.kind)
        transformers_quietly()
        check_block(cfg.group_size, json.loads((lm.directory / "config.json").read_text(encoding="utf-8")),
                    "group_size", BLOCK_SIZES)
        windows = _windows(state, cfg.calibration_windows, "calibration_windows", cfg.algorithm) \
            if cfg.algorithm in ("gptq", "awq", "autoround", "qat") else []
        model = dataclasses.replace(lm).torch_model()  # a fresh copy: INC changes it in place
        if cfg.algorithm == "awq":
            awq.absorb_pairs(model, set())  # a family AWQ cannot scale is refused before any scan
        names = _linear_names(model)
        choices, fixed = layer_choices(cfg, names, model)
        dead = tuple(lm_sublayers.dead_modules(model))  # removed by prune.depth: the targets drop them
        for n in names:
            if dead and n.startswith(dead):
                choices[n] = Choice(16, cfg.group_size)
                fixed.add(n)
        mixed: dict[str, Any] = {}
        if cfg.mixed is not None:
            scan_windows = _windows(state, cfg.mixed.windows, "mixed.windows", "mixed")
            choices, mixed = choose_mix(cfg, cfg.mixed, model, choices, fixed, scan_windows, state)
        t0 = time.perf_counter()
        what = f"{cfg.algorithm.upper()} {cfg.bits}-bit group {cfg.group_size}{'' if cfg.symmetric else ' asym'}"
        if cfg.mixed is not None:
            what = f"{cfg.algorithm.upper()} mixed ({', '.join(sorted({c.key for c in choices.values()}))})"
        kept = [n for n, c in choices.items() if c.bits == 16]
        trained: dict[str, Any] = {}  # what QAT's, AutoRound's or AWQ's own run measured (its record)
        changed: dict[str, np.ndarray] = {}  # float weights the algorithm changed besides the layers
        if cfg.algorithm == "qat":
            from edgekit.quantize import lm_qat

            teacher = dataclasses.replace(lm).torch_model()
            layers, trained = lm_qat.train(model, teacher, choices, cfg.symmetric, windows,
                                           cfg.qat or lm_qat.QATSpec(), state.progress)
            del teacher
            tool = "edgekit qat"
        elif cfg.algorithm == "autoround":
            from edgekit.quantize import autoround

            layers, trained = autoround.quantize(model, lm.tokenizer(), choices, cfg.bits, cfg.group_size,
                                                 cfg.symmetric, windows, cfg.autoround or autoround.AutoRoundSpec(),
                                                 state.progress)
            tool = f"auto-round {version_of('auto_round')}"
        else:
            import torch

            q = _inc()
            absorb = awq.absorb_pairs(model, set(kept)) if cfg.algorithm == "awq" else None
            with _hidden(model, kept):
                example = {"example_inputs": torch.as_tensor(np.asarray(windows[0], np.int64)[None])} if absorb else {}
                model = q.prepare(model, _inc_config(cfg, choices, absorb), **example)
                if windows:
                    _calibrate(model, windows, state, what)
                hooks = block_ticks(model, state.progress, f"{what}: neural-compressor, block by block"
                                     + (" (minutes on a real model)" if windows else ""))
                model = q.convert(model)
                for h in hooks:
                    h.remove()
            layers = _extract(model)
            if absorb is not None:
                changed = awq.absorbed_norms(model, absorb)
                trained = {"absorbed": {k: list(v) for k, v in absorb.items()}, "norms_changed": len(changed)}
            tool = f"neural-compressor {version_of('neural_compressor')} {cfg.algorithm}"
        seconds = time.perf_counter() - t0
        del model
        if len(layers) + len(kept) != len(names):
            missing = sorted(set(names) - set(layers) - set(kept))
            raise StageError(f"quantize.weight_only: {tool} left {len(missing)} layer(s) unquantized "
                             f"({', '.join(missing[:3])})")
        # not under the artifact: the dequantized copy is the targets' input, not something to ship
        scratch = state.scratch or Path(tempfile.mkdtemp(prefix="edgekit-weight-only-"))
        out = Path(scratch) / f"weight-only-{cfg.algorithm}"
        tick = state.progress("writing the dequantized weights for the targets' float graphs", 1)
        _write_directory(lm, layers, out, changed)
        tick(1)
        floats = {}
        if kept:
            mods = dict(dataclasses.replace(lm).torch_model().named_modules())
            floats = {n: mods[n].weight.detach().numpy().copy() for n in kept}
        state.weight_only = QuantizedLM(out, layers, floats, tool)
        by_bits: dict[str, int] = {}
        for c in choices.values():
            by_bits[str(c.bits)] = by_bits.get(str(c.bits), 0) + 1
        measured = {"tool": tool, "quantize_s": round(seconds, 2), "calibration_windows": len(windows),
                    "mse_search": _mse_search(cfg) if cfg.algorithm in ("rtn", "gptq") else None,
                    "layers_by_bits": by_bits, "float_layers": kept,
                    "integer_bytes": int(sum(q.ints.size * q.bits // 8 for q in layers.values()))}
        if mixed:
            measured["mixed"] = mixed
        if trained:
            measured[cfg.algorithm] = trained
        return state, StageRecord(kind=self.kind, settings=cfg.model_dump(), measured=measured)
