"""Who should pack SmolLM2-135M's INT4 weights for ONNX Runtime GenAI: the model builder's own
algorithms, or onnxruntime's block quantizer (default or HQQ) on the builder's fp32 graph.

Every variant is block 64 with the lm_head at INT8 (the recipe's settings), built from the same
fp32 directory in this run; the builder's `-p int4` with its own defaults (block 32, lm_head at
INT4) runs beside them as the speed and quality peer a user starts from. Quality: perplexity and
KL per token against PyTorch fp32 on held-out pydoc_topics windows. Speed: decode time per token
at batch 1, 2 threads, each variant in a fresh process per round, the order reversed every other
round, median of the rounds, and against the builder's defaults as the median of the two
folders' ratios round by round.

    .venv/bin/python -m benchmarks.genai_packing [--rounds 2] [--windows 8]

The builder's defaults also run a second time under another name (an A/A pair): the spread of
that ratio is the noise floor of the machine, under every other ratio in the table.

prints the table and writes benchmarks/results/<cpu-class>/genai_packing.json."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from benchmarks._results import print_tables, save, table
from benchmarks.llm import GGUF, paired
from edgekit.checks import lm as lmcheck
from edgekit.profile.generation import measure_in_child
from edgekit.recipe.sections import DataSpec, ModelSpec
from edgekit.runtimes.cpu_classes import local_class

BLOCK = 64
PEER = "builder defaults (block 32, lm_head int4)"
AT_PEER = "onnxruntime default at the builder's defaults (block 32, lm_head int4)"
AGAIN = "builder defaults, timed again (A/A: the noise floor)"


def _builder(src: Path, out: Path, precision: str, *extra: str) -> None:
    with tempfile.TemporaryDirectory() as cache:
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(out),
                        "-p", precision, "-e", "cpu", "-c", cache, *(["--extra_options", *extra] if extra else [])],
                       check=True, capture_output=True)


def _hqq(fp32: Path, out: Path) -> None:
    """HQQ on every MatMul but the lm_head (INT8, default quantizer), the way a user would call it."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nb

    from edgekit.export.genai_requant import LM_HEAD, _quantize, share_tied_embedding

    model = onnx.load(str(fp32 / "model.onnx"))
    weight = next(n.input[1] for n in model.graph.node if n.name == LM_HEAD)
    model = _quantize(model, bits=4, block_size=BLOCK, is_symmetric=False, accuracy_level=4,
                      nodes_to_exclude=[LM_HEAD], algo_config=nb.HQQWeightOnlyQuantConfig(block_size=BLOCK, bits=4))
    model = _quantize(model, bits=8, block_size=BLOCK, is_symmetric=True, accuracy_level=4, nodes_to_include=[LM_HEAD],
                      algo_config=nb.DefaultWeightOnlyQuantConfig(block_size=BLOCK, is_symmetric=True,
                                                                  accuracy_level=4, bits=8))
    share_tied_embedding(model, weight, 8, BLOCK)
    out.mkdir()
    onnx.save(model, str(out / "model.onnx"), save_as_external_data=True, location="model.onnx.data")


def _same_weights(a: Path, b: Path) -> str:
    """Whether two folders' quantized nodes hold the same packed weights, scales and zero points,
    node by node in graph order: the check that a packing is the peer's, not just as good."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    def packed(d: Path) -> list[list[np.ndarray]]:
        model = onnx.load(str(d / "model.onnx"))
        init = {t.name: t for t in model.graph.initializer}
        return [[numpy_helper.to_array(init[i]) for i in n.input[1:] if i in init] for n in model.graph.node
                if n.op_type in ("MatMulNBits", "GatherBlockQuantized")]

    x, y = packed(a), packed(b)
    if len(x) != len(y):
        return f"{len(y)} quantized nodes vs {len(x)}"
    differ = sum(not (len(p) == len(q) and all(u.shape == v.shape and np.array_equal(u, v) for u, v in zip(p, q)))
                 for p, q in zip(x, y))
    return "identical" if differ == 0 else f"{differ} of {len(x)} nodes differ"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    args = ap.parse_args()

    from edgekit.errors import ModelLoadError
    from edgekit.export.genai_requant import requantize
    from edgekit.runtimes.genai import GenaiRunner, TorchLM
    from edgekit.sources.causal_lm import load_causal_lm
    from edgekit.sources.text import load_text, token_windows

    with tempfile.TemporaryDirectory(prefix="bench-packing-") as tmp:
        tmp = Path(tmp)
        cl = load_causal_lm(ModelSpec(gguf=GGUF), Path.cwd(), tmp)
        fp32 = tmp / "fp32"
        _builder(cl.directory, fp32, "fp32")
        lm8 = ("matmul_mixed_precision=last_matmul:int8", f"block_size={BLOCK}", "is_symmetric=true")
        folders = {"builder rtn (sym)": tmp / "rtn", "onnxruntime default (sym)": tmp / "def_sym",
                   "onnxruntime default (asym)": tmp / "def_asym", "onnxruntime HQQ (asym, float zero points)": tmp / "hqq"}
        _builder(cl.directory, folders["builder rtn (sym)"], "int4", *lm8, "algo_config=rtn")
        folders[PEER] = tmp / "builder_defaults"
        _builder(cl.directory, folders[PEER], "int4")
        refused = []
        for algo in ("default", "k_quant"):
            try:
                _builder(cl.directory, tmp / algo, "int4", *lm8, f"algo_config={algo}")
                folders[f"builder {algo} (sym)"] = tmp / algo
            except subprocess.CalledProcessError as exc:
                why = [ln for ln in exc.stderr.decode(errors="replace").splitlines() if "Error" in ln] or ["failed"]
                refused.append([f"builder {algo} (sym)", why[-1].strip()[:160]])
        requantize(fp32, folders["onnxruntime default (sym)"], 4, BLOCK, True, 8, 4)
        requantize(fp32, folders["onnxruntime default (asym)"], 4, BLOCK, False, 8, 4)
        folders[AT_PEER] = tmp / "def_at_peer"
        requantize(fp32, folders[AT_PEER], 4, 32, True, 4, 4)
        _hqq(fp32, folders["onnxruntime HQQ (asym, float zero points)"])
        for k, d in folders.items():
            if k.startswith("onnxruntime"):
                for f in fp32.iterdir():
                    if not f.name.startswith("model.onnx"):
                        shutil.copy(f, d / f.name)

        tok = cl.tokenizer()
        texts = load_text(DataSpec(builtin="pydoc_topics", split="test", samples=args.windows, seq_len=args.seq_len),
                          "evaluation", Path.cwd()).texts
        windows = token_windows(texts, lambda t: list(tok(t, add_special_tokens=False)["input_ids"]), args.seq_len,
                                args.windows, "evaluation", sep=tok.eos_token_id)
        ref = TorchLM(cl.torch_model(), 2, tok.eos_token_id)
        refs = [lmcheck.log_softmax(ref.logits(ids)) for ids in windows]
        quality = {}
        for k, d in list(folders.items()):
            try:
                runner, tally = GenaiRunner(d / "model.onnx", 2), lmcheck.Tally()
            except ModelLoadError as exc:  # the builder wrote it, the runtime refuses it
                refused.append([k, f"built, but {str(exc).split(' failed:')[-1].strip()[:160]}"])
                del folders[k]
                continue
            for ids, lp in zip(windows, refs):
                tally.add(lp, runner.logits(ids), ids)
            runner.close()
            quality[k] = tally.summary()
            print(f"{k}: perplexity {quality[k]['perplexity']:.3f}", flush=True)
        same = {k: _same_weights(folders[PEER], d) for k, d in folders.items()}
        # the same folder under a second name, timed in the same rounds: how far two runs of one
        # file drift apart here, the floor under every speed ratio in the table
        folders[AGAIN], quality[AGAIN], same[AGAIN] = folders[PEER], quality[PEER], "the same folder"
        spec = SimpleNamespace(warmup_s=0.5, min_duration_s=2.0, min_iters=8, max_duration_s=20.0)
        prompt = windows.reshape(-1)[:128]
        names, decode = list(folders), {k: [] for k in folders}
        for r in range(args.rounds):
            for k in names if r % 2 == 0 else names[::-1]:
                m = measure_in_child("onnxruntime-genai", folders[k] / "model.onnx", {128: prompt}, 64, spec, 2,
                                     tok.eos_token_id)
                decode[k].append(m["decode_ms_per_token"]["median_ms"])
                print(f"round {r + 1}/{args.rounds} {k}: {decode[k][-1]:.2f} ms/token", flush=True)
        sizes = {k: sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) / 1e6 for k, d in folders.items()}

    ms = {k: statistics.median(v) for k, v in decode.items()}
    own = lmcheck.Tally()  # PyTorch fp32 scored against itself: the reference perplexity
    for ids, lp in zip(windows, refs):
        own.add(lp, lp, ids)
    fp32_ppl = own.summary()["perplexity"]
    rows = [[k, f"{sizes[k]:.1f}", f"{quality[k]['perplexity']:.3f}", f"{quality[k]['perplexity'] / fp32_ppl - 1:+.1%}",
             f"{quality[k]['kl_mean']:.4f}", f"{ms[k]:.2f}", f"{paired(decode, PEER, k):.2f}x",
             f"{min(a / b for a, b in zip(decode[PEER], decode[k])):.2f}–{max(a / b for a, b in zip(decode[PEER], decode[k])):.2f}",
             same[k]] for k in folders]
    cls = local_class()
    tables = [table(f"SmolLM2-135M INT4 block {BLOCK}, lm_head INT8 (unless named), on {cls}: {len(windows)} held-out windows of "
                    f"{args.seq_len} tokens (PyTorch fp32 perplexity {fp32_ppl:.3f}); decode at batch 1, 2 threads, "
                    f"prompt 128, 64 new tokens, {args.rounds} rounds",
                    ["packing", "size MB", "perplexity", "vs fp32", "KL/token", "decode ms/token",
                     "speed vs builder defaults (paired by round)", "range over rounds",
                     "packed weights vs builder defaults"], rows),
              table("Refused", ["packing", "why"], refused)]
    print_tables(tables)
    save("genai_packing", tables, {"quality": quality, "decode_ms": decode, "sizes_mb": sizes, "same_weights": same})


if __name__ == "__main__":
    main()
