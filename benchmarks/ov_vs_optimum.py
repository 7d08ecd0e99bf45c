"""SmolLM2-135M's OpenVINO GenAI INT4: edgekit's IRs against optimum-cli's INT4.

Where edgekit's IRs stand against optimum-cli's INT4 on both counts (decode speed and held-out
perplexity), with the verdict that a tie cannot pass.

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
  smollm2_autoround recipe's OpenVINO stage), its embeddings and lm_head at NNCF's INT8;
- the same two edgekit IRs (AWQ + scale estimation; AutoRound) with the embeddings and lm_head
  at INT4 group 64 too (`all_layers: true`): the fewer bytes a decode step reads (AutoRound's is
  the smollm2_int4_fast recipe's, its stages read from that file);
- AutoRound with the embeddings and lm_head at asymmetric INT4 group 32 (`weights: int4_asym,
  group_size: 32, all_layers: true`: after quantize.weight_only those name what NNCF does to the
  layers AutoRound leaves), a little more bytes for a finer round-to-nearest on the lm_head.

Quality: perplexity and KL per token against PyTorch fp32 on held-out pydoc_topics windows.
Speed and its verdict (paired rounds, a sign test): benchmarks._int4_vs_peer.

    .venv/bin/python -m benchmarks.ov_vs_optimum --optimum-cli /tmp/optvenv/bin/optimum-cli --rounds 14
    # about 35 minutes on 2 cores (12 rounds by default); docs/benchmarks.md#llm says how to make
    # that environment

prints the tables and writes benchmarks/results/<cpu-class>/ov_vs_optimum.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks._int4_vs_peer import compare, edgekit_run, recipe_stages
from benchmarks.llm import build_optimum

RUNTIME = "openvino-genai"
PEER = "optimum-cli int4 --group-size 64"
AGAIN = "optimum-cli int4 --group-size 64, timed again (A/A)"
RECIPE = "edgekit NNCF INT4 sym group 64, AWQ + scale estimation (smollm2_int4)"
DATA_FREE = "edgekit NNCF INT4 sym group 64, data-free"
AUTOROUND = "edgekit AutoRound group 64 (smollm2_autoround)"
AWQ_HEAD4 = "edgekit NNCF AWQ + scale estimation, embeddings and lm_head INT4 too"
AR_HEAD4 = "edgekit AutoRound group 64, embeddings and lm_head INT4"
AR_HEAD4_G32 = "edgekit AutoRound group 64, embeddings and lm_head INT4 asym group 32"
OV_INT4 = {"kind": "target.openvino-genai", "weights": "int4_sym", "group_size": 64}


def build(cl: Any, tmp: Path, args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, Any]]:
    optimum, _ = build_optimum(args.optimum_cli, cl.directory, tmp / "optimum")
    nncf = edgekit_run(cl.directory, tmp, "nncf", [
        {**OV_INT4, "name": "awq_se", "data_aware": ["awq", "scale_estimation"]},
        {**OV_INT4, "name": "data_free"},
        {**OV_INT4, "name": "awq_se_head4", "data_aware": ["awq", "scale_estimation"], "all_layers": True}],
        args, RUNTIME, calibration=8)
    fast = recipe_stages("smollm2_int4_fast")  # the INT4-lm_head IR is that recipe's
    ar = edgekit_run(cl.directory, tmp, "autoround", [
        fast[0], {"kind": "target.openvino-genai", "name": "ov_int4", "weights": "int4_sym"},
        {**fast[2], "name": "ov_int4_head4"},
        {**fast[2], "name": "ov_int4_head4_g32", "weights": "int4_asym", "group_size": 32}], args, RUNTIME)
    return ({PEER: optimum["folder"] / "openvino_model.xml", RECIPE: nncf["awq_se"], DATA_FREE: nncf["data_free"],
             AUTOROUND: ar["ov_int4"], AWQ_HEAD4: nncf["awq_se_head4"], AR_HEAD4: ar["ov_int4_head4"],
             AR_HEAD4_G32: ar["ov_int4_head4_g32"]},
            {"optimum": {k: str(v) for k, v in optimum.items()}})


if __name__ == "__main__":
    from edgekit.runtimes import ov

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--optimum-cli", type=Path, required=True,
                    help="optimum-cli of an environment with optimum-intel 2.1 (transformers < 5.6)")
    compare("ov_vs_optimum", RUNTIME, f"SmolLM2-135M OpenVINO GenAI INT4 at the device's default precision "
            f"({ov.default_precision()})", ap, build, AGAIN,
            [RECIPE, DATA_FREE, AUTOROUND, AWQ_HEAD4, AR_HEAD4, AR_HEAD4_G32],
            ("speed vs optimum-cli (paired by round)", "rounds faster than optimum-cli's",
             "Against optimum-cli's INT4 (the issue's OpenVINO peer)"))
