"""Saving an OpenVINO IR so that an identical build writes identical bytes.

OpenVINO names a node it creates (a Constant, a Convert that NNCF or the converter inserts)
`<Type>_<n>`, n from a counter that runs over the whole process, so the same model built after
other work in the process gets other names, and its .xml other bytes. A node folded into a
constant keeps its first name (`Range_250371`, now a Const). Measured on
recipes/minilm_int8_openvino.yaml: two identical builds in fresh processes differed in 111 such
names of the INT8 IR and in nothing else, which made the emulation cache (keyed by the
artifact's bytes) miss on every rebuild. Nothing looks these names up, so they are renumbered
by the node's place in the graph's topological order before saving, the word before the number
kept (an ONNX exporter's `Conv_3` may become `Conv_17`: still a name, now a stable one)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_AUTO = re.compile(r"^([A-Za-z][A-Za-z0-9]*)_(\d+)$")


def stable_names(model: Any) -> int:
    """Renames every node whose name is `<Word>_<n>`; returns how many."""
    renamed = 0
    for i, op in enumerate(model.get_ordered_ops()):
        m = _AUTO.match(op.get_friendly_name())
        if m:
            op.set_friendly_name(f"{m.group(1)}_{i}")
            renamed += 1
    return renamed


def save(model: Any, xml: Path, **options: Any) -> None:
    """ov.save_model after stable_names; `options` are save_model's (compress_to_fp16)."""
    import openvino as ov

    stable_names(model)
    ov.save_model(model, str(xml), **options)
