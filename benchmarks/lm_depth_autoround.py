"""Depth pruning composed with data-aware INT4: SmolLM2-135M-Instruct with 2 of its 30 blocks
removed (the greedy least-KL score), healed by `finetune.lm` (300 steps on 48 calibration windows:
150 steps on 16 left the healed model at +13.7%), then AutoRound INT4 group 64
(`quantize.weight_only`) placed on both generation runtimes, against AutoRound INT4 alone and the
healed model alone, decode paired over interleaved rounds. It is benchmarks.lm_depth with
`--int4 autoround` and these counts; any of lm_depth's options may follow and override them.

    .venv/bin/python -m benchmarks.lm_depth_autoround     # about 57 minutes on 2 cores

writes benchmarks/results/<cpu-class>/lm_depth_autoround.json."""

from __future__ import annotations

import sys

from benchmarks import lm_depth

DEFAULTS = ["--int4", "autoround", "--counts", "2", "--heal-count", "2", "--heal-scores", "greedy",
            "--heal-steps", "300", "--heal-windows", "48", "--rounds", "5"]


if __name__ == "__main__":
    lm_depth.main([*DEFAULTS, *sys.argv[1:]])
