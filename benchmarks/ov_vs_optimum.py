"""Where edgekit's OpenVINO GenAI INT4 stands against optimum-cli's INT4 on both counts (decode
speed and held-out perplexity) for SmolLM2-135M-Instruct, with the verdict that a tie cannot pass.

optimum-cli (optimum-intel 2.1, from a side environment: it pins transformers < 5.6) exports the
same fp32 directory with `--weight-format int4 --group-size 64` (its default group, 128, does not
divide this model's width 576), which asks NNCF for asymmetric INT4, data-free. Variants, all
from that directory in this run, each run by openvino_genai.LLMPipeline at the device's default
precision:

- optimum-cli's folder, and the same folder timed again under a second name (A/A);
- edgekit, the smollm2_int4 recipe's OpenVINO stage (NNCF INT4 symmetric group 64 with AWQ and
  scale estimation on 8 calibration windows);
- edgekit, the same without the data-aware methods;
- edgekit, AutoRound INT4 group 64 (`quantize.weight_only`) placed in the IR (the
  smollm2_autoround recipe's OpenVINO stage).

Quality: perplexity and KL per token against PyTorch fp32 on held-out pydoc_topics windows.
Speed and its verdict (paired rounds, a sign test): benchmarks._int4_vs_peer.

    .venv/bin/python -m benchmarks.ov_vs_optimum --optimum-cli /tmp/optvenv/bin/optimum-cli [--rounds 12]
    # about 20 minutes on 2 cores; docs/benchmarks.md#llm says how to make that environment

prints the tables and writes benchmarks/results/<cpu-class>/ov_vs_optimum.json."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks._int4_vs_peer import PROMPT, edgekit_run, held_out, score, time_rounds, verdict_tables, weights_mb
from benchmarks._results import print_tables, save
from benchmarks.llm import GGUF, build_optimum
from edgekit.recipe.sections import ModelSpec
from edgekit.runtimes.cpu_classes import local_class

RUNTIME = "openvino-genai"
PEER = "optimum-cli int4 --group-size 64"
AGAIN = "optimum-cli int4 --group-size 64, timed again (A/A)"
RECIPE = "edgekit NNCF INT4 sym group 64, AWQ + scale estimation (smollm2_int4)"
DATA_FREE = "edgekit NNCF INT4 sym group 64, data-free"
AUTOROUND = "edgekit AutoRound group 64 (smollm2_autoround)"
OV_INT4 = {"kind": "target.openvino-genai", "weights": "int4_sym", "group_size": 64}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--optimum-cli", type=Path, required=True,
                    help="optimum-cli of an environment with optimum-intel 2.1 (transformers < 5.6)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    args = ap.parse_args()

    from edgekit.runtimes import ov
    from edgekit.sources.causal_lm import load_causal_lm

    with tempfile.TemporaryDirectory(prefix="bench-vs-optimum-") as tmp:
        tmp = Path(tmp)
        cl = load_causal_lm(ModelSpec(gguf=GGUF), Path.cwd(), tmp)
        optimum, _ = build_optimum(args.optimum_cli, cl.directory, tmp / "optimum")
        nncf = edgekit_run(cl.directory, tmp, "nncf", [
            {**OV_INT4, "name": "awq_se", "data_aware": ["awq", "scale_estimation"]},
            {**OV_INT4, "name": "data_free"}], args.windows, RUNTIME, calibration=8)
        ar = edgekit_run(cl.directory, tmp, "autoround", [
            {"kind": "quantize.weight_only", "algorithm": "autoround", "bits": 4, "group_size": 64, "symmetric": True},
            {"kind": "target.openvino-genai", "name": "ov_int4", "weights": "int4_sym"}], args.windows, RUNTIME)
        folders = {PEER: optimum["folder"] / "openvino_model.xml", RECIPE: nncf["awq_se"], DATA_FREE: nncf["data_free"],
                   AUTOROUND: ar["ov_int4"]}
        tok, windows, refs, fp32_ppl = held_out(cl, args.windows, args.seq_len)
        quality = score(RUNTIME, folders, windows, refs)
        # the same folder under a second name, timed in the same rounds
        folders[AGAIN], quality[AGAIN] = folders[PEER], quality[PEER]
        sizes = {k: weights_mb(m) for k, m in folders.items()}
        decode = time_rounds(RUNTIME, folders, windows.reshape(-1)[:PROMPT], tok.eos_token_id, args.rounds)

    tables = verdict_tables(
        f"SmolLM2-135M OpenVINO GenAI INT4 on {local_class()} at the device's default precision "
        f"({ov.default_precision()}): {len(windows)} held-out windows of {args.seq_len} tokens (PyTorch fp32 perplexity "
        f"{fp32_ppl:.3f}); decode at batch 1, 2 threads, prompt 128, 64 new tokens, {args.rounds} rounds",
        PEER, AGAIN, [RECIPE, DATA_FREE, AUTOROUND], quality, decode, sizes, fp32_ppl,
        ("speed vs optimum-cli (paired by round)", "rounds faster than optimum-cli's",
         "Against optimum-cli's INT4 (the issue's OpenVINO peer)"))
    print_tables(tables)
    save("ov_vs_optimum", tables, {"quality": quality, "decode_ms": decode, "sizes_mb": sizes,
                                   "fp32_perplexity": fp32_ppl, "optimum": {k: str(v) for k, v in optimum.items()}})


if __name__ == "__main__":
    main()
