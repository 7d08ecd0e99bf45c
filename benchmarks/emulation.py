"""What verification under emulated CPU classes costs a user: each recipe compressed three ways in
this one run, in a fresh process each —

- without emulation (`verify.emulate: false`), the base;
- with emulation, the cache empty (a first build);
- with emulation again, the cache as the first build left it (an identical rebuild).

The recipes run as they are, profiling included, so the ratios are what `edgekit compress`
costs; the order of the three is rotated from recipe to recipe. Caches other than emulation's
(trained zoo weights, a mixed-precision scan) are filled by an untimed build first, as a user's
second build would find them. Targets: with emulation at most
2x the base and at most 5 minutes more; MiniLM recipes at most 10 minutes.

    .venv/bin/python -m benchmarks.emulation [--recipes int8_pc minilm_int8_openvino | --all]

prints the table and writes benchmarks/results/<cpu-class>/emulation.json. Recipes measured by an
earlier run on the same CPU class and not re-run keep their rows (each row says when it was
measured), so the table can be filled a few recipes at a time."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._results import print_tables, save, table
from edgekit.checks.emulate import qemu_binary
from edgekit.runtimes.cpu_classes import local_class

ROOT = Path(__file__).resolve().parents[1]


def _compress(recipe: dict[str, Any], tmp: Path, name: str, cache: Path) -> dict[str, Any]:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    env = {**os.environ, "EDGEKIT_CACHE": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgekit.cli", "compress", "--recipe", str(path), "--out",
                           str(tmp / name), "--force"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        last = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        return {"seconds": seconds, "error": (last[-1] if last else f"exit {proc.returncode}")[:200]}
    manifest = json.loads((tmp / name / recipe["name"] / "manifest.json").read_text())
    entries = [v for a in manifest["artifacts"] for v in a.get("verified_on") or []]
    return {"seconds": seconds,
            "emulated": sum(v.get("mode") == "emulated" for v in entries),
            "from_cache": sum(bool(v.get("from_cache")) for v in entries),
            "not_verified": manifest["deploy"].get("not_verified") or {},
            # to tell a cache miss from a rebuild that wrote other model files
            "files": {f["path"]: f["sha256"] for f in manifest.get("files") or []}}


def _rows(raw: dict[str, dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for name, got in raw.items():
        when = got.get("_measured", "")
        runs = {k: v for k, v in got.items() if not k.startswith("_")}
        b = runs["no emulation"]["seconds"]
        cold = runs.get("emulated, cold cache", {}).get("files")
        for label, r in runs.items():
            differ = "–"
            if label == "emulated, warm cache" and cold is not None and r.get("files") is not None:
                differ = ", ".join(sorted(k for k in set(cold) | set(r["files"])
                                          if k.startswith("models/") and cold.get(k) != r["files"].get(k))) or "none"
            extra = r["seconds"] - b
            goal = "<= 600 s" if name.startswith("minilm") else "<= 2x and <= +300 s"
            ok = r["seconds"] <= 600 if name.startswith("minilm") else (r["seconds"] <= 2 * b and extra <= 300)
            rows.append([name, label, f"{r['seconds']:.0f}", f"{r['seconds'] / b:.2f}x", f"{extra:+.0f}",
                         r.get("emulated", "–"), r.get("from_cache", "–"),
                         differ, ", ".join(sorted(r.get("not_verified") or {})) or "–", r.get("error", ""),
                         "" if label == "no emulation" else goal,
                         "" if label == "no emulation" or "error" in r else ("met" if ok else "not met"), when])
    return rows


def main() -> None:
    import datetime as dt

    from benchmarks._results import path_for, previous

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", nargs="+", default=["int8_pc", "minilm_int8_openvino"])
    ap.add_argument("--all", action="store_true", help="every recipe under recipes/")
    args = ap.parse_args()
    if args.all:
        args.recipes = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    if qemu_binary() is None:
        raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user (the benchmark measures emulation)")
    cache_home = Path(os.environ.get("EDGEKIT_CACHE") or Path.home() / ".cache" / "edgekit")
    today = dt.date.today().isoformat()
    earlier = path_for("emulation")
    when = json.loads(earlier.read_text())["date"][:10] if earlier.is_file() else ""
    raw: dict[str, dict[str, Any]] = {k: {"_measured": when, **v} for k, v in (previous("emulation") or {}).items()
                                      if k not in args.recipes and (ROOT / "recipes" / f"{k}.yaml").is_file()}
    with tempfile.TemporaryDirectory(prefix="bench-emulation-") as tmp:
        tmp = Path(tmp)
        for i, name in enumerate(args.recipes):
            base = yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text())
            off = {**base, "verify": {**(base.get("verify") or {}), "emulate": False}}
            on = {**base, "verify": {**(base.get("verify") or {}), "emulate": True}}
            # the emulation cache starts empty for this recipe; what other caches a build fills
            # (the zoo's trained weights, a mixed-precision scan) is there before the first
            # timed run (the user's, or one untimed build fills it): else the first timed run
            # pays for it (measured: smollm2_mixed's base 723 s with its scan, cold 639 s without)
            cache = tmp / f"cache-{name}"
            cache.mkdir()
            for f in cache_home.glob("*.pt"):
                (cache / f.name).symlink_to(f)
            fills = "models.zoo:" in str(base.get("model", {}).get("python", "")) or any(
                isinstance(st, dict) and st.get("mixed") for st in base.get("stages") or [])
            if fills:
                print(f"{name}: an untimed build first, to fill the caches besides emulation's", flush=True)
                _compress({**off, "profile": {"enabled": False}}, tmp, f"{name}-prime", cache)
            runs = [("no emulation", off), ("emulated, cold cache", on), ("emulated, warm cache", on)]
            # rotate where the base falls; the warm run always follows the cold one
            order = [0, 1, 2] if i % 2 == 0 else [1, 2, 0]
            got: dict[str, dict[str, Any]] = {}
            for j in order:
                label, recipe = runs[j]
                got[label] = _compress(recipe, tmp, f"{name}-{j}", cache)
                print(f"{name}: {label}: {got[label]['seconds']:.0f} s", flush=True)
            raw[name] = {**got, "_measured": today}
    cls = local_class()
    tables = [table(f"edgekit compress with and without emulated verification on {cls} (2 cores), fresh process each",
                    ["recipe", "run", "seconds", "vs base", "extra s", "emulated entries", "from cache",
                     "files unlike the cold build's", "not verified", "error", "goal", "status", "measured"],
                    _rows(dict(sorted(raw.items()))))]
    print_tables(tables)
    save("emulation", tables, raw)


if __name__ == "__main__":
    main()
