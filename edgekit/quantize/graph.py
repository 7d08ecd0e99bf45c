"""Editing ONNX graphs with every reader of a tensor in view.

A weight initializer can have more than one reader: a tied embedding (the token table read by a
Gather and, transposed, by the output projection), a weight shared by two Gemm nodes, a graph
output. A rewrite that changes an initializer in place for one node would silently change what
the others compute. So every rewrite here goes through one consumer map, and an initializer
read by anyone else is copied under a new name before it is changed (`private_initializer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Consumers:
    """tensor name -> the nodes reading it (subgraphs of If/Loop/Scan included, as readers of
    the outer names they use), plus the graph outputs. Build it once per rewrite pass and keep
    it current through `rewire`."""

    def __init__(self, model: Any) -> None:
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.refresh()

    def refresh(self) -> None:
        """Re-read the readers after a rewrite replaced the node list (the map holds the node
        protos themselves, and a rebuilt list holds copies)."""
        self.readers: dict[str, list[Any]] = {}
        self.outputs = {o.name for o in self.graph.output}
        for n in self.graph.node:
            for name in _reads(n):
                self.readers.setdefault(name, []).append(n)
        self._taken = set(self.inits) | {o for n in self.graph.node for o in n.output} | \
            {i.name for i in self.graph.input}

    def of(self, tensor: str) -> list[Any]:
        return self.readers.get(tensor, [])

    def shared(self, tensor: str, node: Any) -> bool:
        """Whether anything other than `node` reads `tensor` (another node, or a graph output)."""
        return tensor in self.outputs or any(r is not node for r in self.of(tensor))

    def rewire(self, node: Any, index: int, tensor: str) -> None:
        """Make `node.input[index]` read `tensor`, keeping the map current."""
        old = node.input[index]
        node.input[index] = tensor
        if old not in node.input:
            self.readers[old] = [r for r in self.of(old) if r is not node]
        self.readers.setdefault(tensor, []).append(node)

    def fresh_name(self, base: str) -> str:
        name, i = base, 1
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._taken.add(name)
        return name

    def private_initializer(self, node: Any, index: int) -> Any:
        """The initializer `node.input[index]` names, safe to change for this node alone: the
        same proto when nothing else reads it, else a copy under a new name that the node is
        rewired to (the other readers keep the original)."""
        name = node.input[index]
        init = self.inits[name]
        if not self.shared(name, node) and list(node.input).count(name) == 1:
            return init
        copy = self.graph.initializer.add()  # (append would store a copy of the proto, not this one)
        copy.CopyFrom(init)
        copy.name = self.fresh_name(f"{name}_{node.name or node.op_type}")
        self.inits[copy.name] = copy
        self.rewire(node, index, copy.name)
        return copy


def _reads(node: Any) -> list[str]:
    """Every tensor a node reads, including names its subgraphs take from the outer scope."""
    names = [i for i in node.input if i]
    for attr in node.attribute:
        for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            local = {i.name for i in g.input} | {i.name for i in g.initializer} | {o for n in g.node for o in n.output}
            names += [t for n in g.node for t in _reads(n) if t not in local]
    return names


def privatize(model: Any, inputs: dict[str, int], consumers: Consumers | None = None) -> list[str]:
    """Give each node of the listed op types (op type -> input index) its own copy of a weight
    initializer that other nodes or graph outputs also read, so that a rewrite replacing that
    weight (a packed INT4 table, a scaled weight) cannot change what the others compute.
    Returns the names of the copies made."""
    c = consumers or Consumers(model)
    made = []
    for n in list(model.graph.node):
        i = inputs.get(n.op_type)
        if i is None or len(n.input) <= i or n.input[i] not in c.inits:
            continue
        if c.shared(n.input[i], n):
            made.append(c.private_initializer(n, i).name)
    return made


def depthwise_weights(path: Path) -> list[str]:
    """Weight initializers read only as the weight of depthwise convolutions: Conv with one
    input and one output channel per group (weight [group, 1, kh, kw]), the case whose integer
    kernels cannot saturate on any x86 class (edgekit.quantize.overflow). Grouped convolutions
    with more channels per group, and depthwise ones with a channel multiplier, run on the GEMM
    kernels that can."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    readers = Consumers(model)

    def depthwise(node: Any, name: str) -> bool:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = shapes[name]
        return (node.op_type == "Conv" and len(node.input) > 1 and node.input[1] == name and group > 1
                and len(dims) >= 3 and dims[0] == group and dims[1] == 1)

    return sorted(w for w in shapes if readers.readers.get(w) and w not in readers.outputs
                  and all(depthwise(n, w) for n in readers.readers[w]))
