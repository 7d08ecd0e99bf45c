"""Removed attention / MLP sublayers (edgekit.sources.lm_sublayers) taken out of an ONNX Runtime
GenAI folder the model builder wrote.

The builder knows only whole decoder layers, so it builds the removed sublayers too (with their
zeroed output projection, adding nothing). In its graph every sublayer's output enters the
residual stream through a SkipSimplifiedLayerNormalization (input 0: the residual, input 1: the
sublayer's output; output 0: the normalised sum, output 3: the sum). Removing the sublayer is
replacing that node by a SimplifiedLayerNormalization of the residual alone, whose "sum" is the
residual itself; everything that fed only the sublayer is then dead and goes, and so do a
removed attention's KV cache input and output. The remaining layers' cache entries are numbered
0, 1, ... in order and `genai_config.json` counts only them, which is how onnxruntime-genai
binds `past_key_values.%d` / `present.%d`.

Written by hand: no graph tool knows this builder's layer layout; onnx's own helpers do the
editing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekit.core.backends import require
from edgekit.errors import StageError

SCOPE = {"attention": "/model/layers.{i}/attn/", "mlp": "/model/layers.{i}/mlp/"}
KV = ("past_key_values.{i}.key", "past_key_values.{i}.value", "present.{i}.key", "present.{i}.value")


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new
    for out in graph.output:
        if out.name == old:
            out.name = new


def _cut(graph: Any, helper: Any, layer: int, part: str) -> None:
    scope = SCOPE[part].format(i=layer)
    producer = {o: n for n in graph.node for o in n.output if o}
    joins = [n for n in graph.node if n.op_type == "SkipSimplifiedLayerNormalization"
             and any(k < 2 and producer.get(x) is not None and producer[x].name.startswith(scope)
                     for k, x in enumerate(n.input))]
    if len(joins) != 1 or (len(joins[0].input) > 3 and joins[0].input[3]):
        raise StageError(f"target.onnxruntime-genai: cannot take layer {layer}'s {part} out of the builder's graph: "
                         f"{len(joins)} residual joins read from {scope} where one without a bias input was expected; "
                         "this family's graph layout is not one edgekit knows (remove whole blocks: unit: block)")
    join = joins[0]
    side = 1 if producer.get(join.input[1]) is not None and producer[join.input[1]].name.startswith(scope) else 0
    residual = join.input[1 - side]
    attrs = {a.name: helper.get_attribute_value(a) for a in join.attribute}
    norm = helper.make_node("SimplifiedLayerNormalization", [residual, join.input[2]], [join.output[0]],
                            name=join.name, axis=-1, epsilon=attrs.get("epsilon", 1e-6), stash_type=1)
    total = join.output[3] if len(join.output) > 3 else ""
    at = next(k for k, n in enumerate(graph.node) if n.name == join.name)
    graph.node[at].CopyFrom(norm)  # `join` may be this very message: read from it before
    if total:
        _rename(graph, total, residual)


def _prune_dead(graph: Any) -> None:
    """Nodes none of whose outputs reach a graph output, and initializers nothing reads."""
    needed = {o.name for o in graph.output}
    nodes = list(graph.node)
    live = [False] * len(nodes)
    for k in range(len(nodes) - 1, -1, -1):  # the builder writes its nodes in topological order
        if any(o in needed for o in nodes[k].output):
            live[k] = True
            needed.update(x for x in nodes[k].input if x)
    kept = [n for n, keep in zip(nodes, live) if keep]
    del graph.node[:]
    graph.node.extend(kept)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def remove_sublayers(folder: Path, removed: dict[str, list[int]], layers: int) -> dict[str, Any]:
    """Rewrite folder/model.onnx (+ .data) and genai_config.json without the removed sublayers.
    `layers`: the decoder layers the builder built. Returns what it removed, for the record."""
    onnx = require("onnx", extra="onnx")
    from onnx import helper

    path = folder / "model.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    for part, idx in removed.items():
        for i in idx:
            _cut(graph, helper, i, part)
    gone = set(removed.get("attention", []))
    for i in sorted(gone):
        names = {t.format(i=i) for t in KV}
        for seq in (graph.input, graph.output):
            for v in [v for v in seq if v.name in names]:
                seq.remove(v)
    _prune_dead(graph)
    kept = [i for i in range(layers) if i not in gone]
    for new, old in enumerate(kept):  # ascending, so a new name never meets an old one still in use
        if new != old:
            for t in KV:
                a, b = t.format(i=old), t.format(i=new)
                for v in graph.input:
                    if v.name == a:
                        v.name = b
                for node in graph.node:
                    node.input[:] = [b if x == a else x for x in node.input]
                    node.output[:] = [b if x == a else x for x in node.output]
                for v in graph.output:
                    if v.name == a:
                        v.name = b
    for f in folder.glob("model.onnx*"):
        f.unlink()
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data")
    config_path = folder / "genai_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["model"]["decoder"]["num_hidden_layers"] = len(kept)
    config_path.write_text(json.dumps(config, indent=4), encoding="utf-8")
    return {"sublayers_removed": {p: list(v) for p, v in removed.items()}, "kv_cache_layers": len(kept)}
