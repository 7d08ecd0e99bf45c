"""Can a native run with the runtime's ISA capped stand in for QEMU? For each INT8 artifact of the
digits CNN (the schemes of benchmarks/cpu_classes.py, whose full-range U8S8 saturates on AVX2)
the same samples are run three ways, each in a fresh process by the same target-side runner:

- natively, as this machine runs it;
- natively with the ISA capped at AVX2: `ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN, inside OpenVINO's
  CPU plugin) and `OV_CPU_MAX_ISA=AVX2` (OpenVINO's own kernels, honoured by builds with debug
  capabilities); ONNX Runtime documents no such switch, so the run shows what the variables do
  to it: nothing is expected;
- under `qemu-x86_64 -cpu Haswell`, the x86-avx2 class as edgekit verifies it.

A cap counts as a verification method for a runtime only if the capped outputs equal the QEMU
ones on every scheme, including one where QEMU differs from native (a case that discriminates).

    .venv/bin/python -m benchmarks.isa_cap [--samples 64]

prints the table and writes benchmarks/results/<cpu-class>/isa_cap.json."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks._results import print_tables, save, table
from benchmarks.cpu_classes import recipe
from edgekit.checks.emulate import QEMU_MODELS, qemu_binary, run_job
from edgekit.pipeline import run
from edgekit.recipe import load_recipe
from edgekit.runtimes.cpu_classes import local_class

CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OV_CPU_MAX_ISA": "AVX2"}


def _outputs(models: list[dict[str, Any]], inputs: dict[str, np.ndarray], how: str) -> dict[str, np.ndarray]:
    if how == "qemu x86-avx2":
        wrapper, env = [qemu_binary(), "-cpu", QEMU_MODELS["x86-avx2"]], None
    else:
        wrapper, env = [], (CAP if how == "native, ISA capped" else None)
    res = run_job("x86-avx2", wrapper, env, models, inputs, threads=2, budget_s=None)
    if res.errors:
        raise SystemExit(f"{how}: {res.errors}")
    return res.outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=64)
    args = ap.parse_args()
    if qemu_binary() is None:
        raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user")
    rows, raw = [], {}
    verdict: dict[str, list[bool]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-isa-cap-") as d:
        for runtime in ("onnxruntime", "openvino"):
            data = recipe("cnn", [], 8, runtime)
            data["verify"]["emulate"] = False
            path = Path(d) / f"{runtime}.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            res = run(load_recipe(path), Path(d) / "out")
            with np.load(res.out_dir / "reference.npz") as z:
                inputs = {k[len("input."):]: z[k][: args.samples] for k in z.files if k.startswith("input.")}
            arts = [a for a in res.manifest["artifacts"] if a["precision"] != "fp32"]
            models = [{"key": a["name"], "runtime": runtime, "model": str(res.out_dir / a["path"]),
                       "options": (a.get("runtime_options") or {}).get(runtime, {})} for a in arts]
            got = {how: _outputs(models, inputs, how) for how in ("native", "native, ISA capped", "qemu x86-avx2")}
            for a in arts:
                k = a["name"]
                native, capped, qemu = (got[h][k] for h in ("native", "native, ISA capped", "qemu x86-avx2"))
                same = bool(np.array_equal(capped, qemu))
                discriminates = not np.array_equal(native, qemu)
                verdict.setdefault(runtime, []).append(same)
                top = lambda x: np.asarray(x).reshape(len(x), -1).argmax(1)  # noqa: E731
                rows.append([runtime, k, f"{np.abs(native - qemu).max():.3g}", f"{np.abs(capped - qemu).max():.3g}",
                             f"{(top(capped) == top(qemu)).mean():.4f}", "yes" if discriminates else "no",
                             "yes" if same else "no"])
                raw[f"{runtime}/{k}"] = {"native_vs_qemu_max": float(np.abs(native - qemu).max()),
                                         "capped_vs_qemu_max": float(np.abs(capped - qemu).max()),
                                         "discriminates": discriminates, "capped_equals_qemu": same}
    summary = [[rt, "counts" if all(v) and any(raw[f"{rt}/{r[1]}"]["discriminates"] for r in rows if r[0] == rt)
                else "does not count", f"{sum(v)}/{len(v)} schemes equal to QEMU"] for rt, v in verdict.items()]
    cls = local_class()
    tables = [table(f"digits CNN INT8 schemes, {args.samples} samples, on {cls}: native, native with "
                    f"{' and '.join(f'{k}={v}' for k, v in CAP.items())}, and qemu Haswell (x86-avx2)",
                    ["runtime", "artifact", "max |native - qemu|", "max |capped - qemu|", "top-1 capped = qemu",
                     "native differs from qemu", "capped equals qemu"], rows),
              table("Does the ISA cap stand in for QEMU's x86-avx2?", ["runtime", "verdict", "why"], summary)]
    print_tables(tables)
    save("isa_cap", tables, raw)


if __name__ == "__main__":
    main()
