"""The one place benchmark results are written and read.

Every script in benchmarks/ ends with `save(...)`, which writes
`benchmarks/results/<cpu-class>/<benchmark>.json`: what was measured (`tables`, the rows the
script printed, already formatted; `result`, its raw payload) and everything needed to read and
reproduce it (CPU class and model, UTC date, the command, the edgekit and peer versions).
`benchmarks/render.py` turns those files into the tables of the docs."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

RESULTS = Path(__file__).resolve().parent / "results"

# the libraries whose versions decide what a benchmark measures (distribution names)
PEERS = ("torch", "onnx", "onnxruntime", "openvino", "nncf", "transformers", "torch-pruning", "onnxruntime-qnn",
         "tensorrt", "ray", "optuna", "onnxruntime-genai", "openvino-genai", "neural-compressor")

METADATA_KEYS = ("benchmark", "cpu_class", "cpu_model", "date", "command", "edgekit_version", "versions", "tables",
                 "result")


def cell(value: Any, spec: str = ".4g") -> str:
    """A table cell as the scripts print it: floats with `spec`, None and NaN as '–'."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else format(value, spec)
    return str(value)


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], notes: str = "") -> dict[str, Any]:
    """One table of a results file; cells that are not strings yet go through `cell`."""
    return {"title": title, "headers": [str(h) for h in headers],
            "rows": [[v if isinstance(v, str) else cell(v) for v in row] for row in rows], "notes": notes}


def versions() -> dict[str, Optional[str]]:
    from edgekit.core.backends import version_of

    out: dict[str, Optional[str]] = {}
    for dist in PEERS:
        try:
            out[dist] = version_of(dist)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            out[dist] = None
    return out


def command(benchmark: str, argv: Optional[Sequence[str]] = None) -> str:
    """The command that reproduces a run: `python -m benchmarks.<name>` and the arguments as given."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", f"benchmarks.{benchmark}", *args])


def path_for(benchmark: str, cpu_class: Optional[str] = None, root: Path = RESULTS) -> Path:
    if cpu_class is None:
        from edgekit.runtimes.cpu_classes import local_class

        cpu_class = local_class()
    return Path(root) / cpu_class / f"{benchmark}.json"


def previous(benchmark: str, root: Path = RESULTS) -> Optional[dict[str, Any]]:
    """The raw `result` of this CPU class's last run of `benchmark`, for scripts that add to it."""
    path = path_for(benchmark, root=root)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("result")


def save(benchmark: str, tables: list[dict[str, Any]], result: Any, argv: Optional[Sequence[str]] = None,
         root: Path = RESULTS) -> Path:
    """Write benchmarks/results/<cpu-class>/<benchmark>.json and return its path."""
    import edgekit
    from edgekit.runtimes.cpu_classes import local_class
    from edgekit.runtimes.device_side import cpu_info

    cls = local_class()
    doc = {
        "benchmark": benchmark,
        "cpu_class": cls,
        "cpu_model": cpu_info().get("model") or "unknown",
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "command": command(benchmark, argv),
        "edgekit_version": edgekit.__version__,
        "versions": versions(),
        "tables": tables,
        "result": result,
    }
    path = path_for(benchmark, cls, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path


def print_tables(tables: list[dict[str, Any]]) -> None:
    """The tables as a script prints them before saving: title, then rows of ` | `-joined cells."""
    for tb in tables:
        print(f"\n{tb['title']}")
        for r in [tb["headers"], *tb["rows"]]:
            print(" | ".join(map(str, r)))


def load_all(root: Path = RESULTS) -> list[dict[str, Any]]:
    """Every results file under `root` (`<cpu-class>/<benchmark>.json`), sorted by benchmark then
    class; each dict also carries `_path`."""
    docs = []
    for path in sorted(Path(root).glob("*/*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["_path"] = str(path)
        docs.append(doc)
    return sorted(docs, key=lambda d: (str(d.get("benchmark")), str(d.get("cpu_class"))))
