"""target.onnxruntime-genai's settings resolved before the builder runs: whether each MLP's gate
and up projections become one packed node (pure checks; the end-to-end runs are in
tests/test_lm_pipeline.py and tests/test_quantize_weight_only.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekit.errors import StageError
from edgekit.export.genai import GenaiConfig, builder_command, fuses_gate_up, unfusable_mlp
from edgekit.quantize.lm_layers import QLayer


def _q(bits: int, group: int = 32) -> QLayer:
    return QLayer(np.zeros((4, 64), np.uint8), np.ones((4, 64 // group), np.float16),
                  np.full((4, 64 // group), 2 ** (bits - 1), np.uint8), bits, group)


def _fixed(gate, up, layer: int = 3) -> SimpleNamespace:
    layers, floats = {}, {}
    for name, q in ((f"model.layers.{layer}.mlp.gate_proj", gate), (f"model.layers.{layer}.mlp.up_proj", up)):
        if q == "float":
            floats[name] = np.zeros((4, 64), np.float32)
        elif q is not None:
            layers[name] = q
    return SimpleNamespace(layers={"model.layers.0.mlp.gate_proj": _q(4), "model.layers.0.mlp.up_proj": _q(4), **layers},
                           floats=floats)


def _cfg(**kw) -> GenaiConfig:
    return GenaiConfig(kind="target.onnxruntime-genai", precision="int4", **kw)


@pytest.mark.parametrize("gate, up, why", [
    (None, None, None),
    (_q(8), _q(8), None),
    ("float", "float", None),
    (_q(4), _q(8), "model.layers.3.mlp.gate_proj is 4 bits / group 32, model.layers.3.mlp.up_proj is 8 bits / group 32"),
    (_q(4, 32), _q(4, 64), "is 4 bits / group 32, model.layers.3.mlp.up_proj is 4 bits / group 64"),
    (_q(4), "float", "model.layers.3.mlp.up_proj is float"),
    ("float", _q(4), "model.layers.3.mlp.gate_proj is float, model.layers.3.mlp.up_proj is 4 bits / group 32"),
])
def test_a_gate_and_up_that_differ_in_width_group_or_float_cannot_share_one_node(gate, up, why):
    found = unfusable_mlp(_fixed(gate, up))
    assert (found is None) if why is None else (why in found), found


def test_auto_fuses_where_the_weights_allow_and_true_refuses_where_they_do_not():
    same, split = _fixed(_q(4), _q(4)), _fixed(_q(4), _q(8))
    assert fuses_gate_up(_cfg(), None) and fuses_gate_up(_cfg(), same) and fuses_gate_up(_cfg(fuse_gate_up=True), same)
    assert not fuses_gate_up(_cfg(), split) and not fuses_gate_up(_cfg(fuse_gate_up=False), same)
    with pytest.raises(StageError, match=r"^target.onnxruntime-genai: fuse_gate_up true, but model.layers.3.mlp.gate_proj "
                                         r"is 4 bits / group 32, .*set fuse_gate_up: false"):
        fuses_gate_up(_cfg(fuse_gate_up=True), split)


def test_the_builder_is_asked_to_fuse_only_with_true():
    """The builder reads any string it is given for the option as true, so false is never passed."""
    cmd = builder_command(Path("src"), Path("out"), Path("cache"), _cfg(block_size=64), fuse=True)
    assert "fuse_mlp_gate_up=true" in cmd and "-p" in cmd and cmd[cmd.index("-p") + 1] == "fp32"
    cmd = builder_command(Path("src"), Path("out"), Path("cache"), _cfg(block_size=64), fuse=False)
    assert not any("fuse_mlp_gate_up" in c for c in cmd)
    fp32 = GenaiConfig(kind="target.onnxruntime-genai", precision="fp32")
    assert builder_command(Path("s"), Path("o"), Path("c"), fp32, fuse=True)[-2:] == ["--extra_options",
                                                                                      "fuse_mlp_gate_up=true"]


@pytest.mark.parametrize("value", ["maybe", 2, "sometimes"])
def test_fuse_gate_up_takes_auto_true_or_false(value):
    with pytest.raises(ValueError, match="fuse_gate_up"):
        _cfg(fuse_gate_up=value)
