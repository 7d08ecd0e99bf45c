"""SmolLM2-135M's ONNX Runtime GenAI INT4: edgekit's folders against the builder's default INT4.

Where edgekit beats the model builder's default INT4 on both counts (decode speed and held-out
perplexity), and where it only ties.

A folder's decode time at batch 1 follows the bytes its weights take: the builder's defaults
(`-p int4 -e cpu`: block 32, lm_head INT4) read fewer than the smollm2_int4 recipe's folder
(block 64, lm_head INT8, chosen for perplexity), so those two are close. A folder that reads
fewer bytes than the builder's (block 64 everywhere, lm_head INT4) is faster, but with
round-to-nearest its perplexity is worse; with AutoRound's integers (quantize.weight_only) on
every other layer it is not. Variants, all from the same fp32 directory in this run:

- the builder's defaults, and the same folder timed again under a second name (A/A: the noise
  floor of a paired ratio);
- edgekit, the smollm2_int4 recipe's ONNX Runtime stage (RTN block 64, lm_head INT8);
- edgekit, RTN block 64 with the lm_head INT4 (the bytes of the next row, without AutoRound);
- edgekit, AutoRound INT4 group 64 (`quantize.weight_only`) with the lm_head INT4 block 64 (the
  smollm2_int4_fast recipe's stages, read from that file), and with the lm_head INT8 (the
  smollm2_autoround recipe's stage).

Quality: perplexity and KL per token against PyTorch fp32 on held-out pydoc_topics windows.
Speed and its verdict (paired rounds, a sign test): benchmarks._int4_vs_peer.

    .venv/bin/python -m benchmarks.genai_vs_builder [--rounds 12]     # about 25 minutes on 2 cores

prints the tables and writes benchmarks/results/<cpu-class>/genai_vs_builder.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks._int4_vs_peer import compare, edgekit_run, recipe_stages
from benchmarks.genai_packing import _builder

RUNTIME = "onnxruntime-genai"
PEER = "builder defaults (block 32, lm_head INT4)"
AGAIN = "builder defaults, timed again (A/A)"
RECIPE = "edgekit RTN block 64, lm_head INT8 (smollm2_int4)"
RTN_HEAD4 = "edgekit RTN block 64, lm_head INT4"
AR_HEAD4 = "edgekit AutoRound group 64, lm_head INT4"
AR_HEAD8 = "edgekit AutoRound group 64, lm_head INT8 (smollm2_autoround)"
ORT_INT4 = {"kind": "target.onnxruntime-genai", "precision": "int4", "block_size": 64, "symmetric": True}


def build(cl: Any, tmp: Path, args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, Any]]:
    _builder(cl.directory, tmp / "peer", "int4")
    rtn = edgekit_run(cl.directory, tmp, "rtn", [{**ORT_INT4, "name": "head8", "int8_layers": ["lm_head"]},
                                                 {**ORT_INT4, "name": "head4"}], args, RUNTIME)
    autoround, ort = recipe_stages("smollm2_int4_fast")[:2]  # the lm_head INT4 folder is that recipe's
    ar = edgekit_run(cl.directory, tmp, "autoround", [
        autoround, {**ort, "name": "head4"}, {**ort, "name": "head8", "int8_layers": ["lm_head"]}], args, RUNTIME)
    return {PEER: tmp / "peer" / "model.onnx", RECIPE: rtn["head8"], RTN_HEAD4: rtn["head4"], AR_HEAD4: ar["head4"],
            AR_HEAD8: ar["head8"]}, {}


if __name__ == "__main__":
    compare("genai_vs_builder", RUNTIME, "SmolLM2-135M ONNX Runtime GenAI INT4",
            argparse.ArgumentParser(description=__doc__.split("\n")[0]), build, AGAIN,
            [RECIPE, RTN_HEAD4, AR_HEAD4, AR_HEAD8],
            ("speed vs builder defaults (paired by round)", "rounds faster than the builder's",
             "Against the builder's default INT4 (the issue's ONNX Runtime peer)"))
