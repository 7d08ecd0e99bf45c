"""`edgekit inspect --target NAME`: which offline check answers for a target name, and which
model files of a path it reads. An NPU profile name goes to the profile check
(edgekit.runtimes.npu.check); any other name to its runtime row's compatibility check, so a runtime that
registers a check (a TensorRT lint, a plugin's) is inspectable without touching this module."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgekit.errors import UsageError
from edgekit.runtimes import registry
from edgekit.runtimes.registry import Problem


def targets() -> list[str]:
    from edgekit.runtimes.npu.profiles import PROFILES

    return [*PROFILES, *(n for n, i in registry.REGISTRY.items() if i.compatibility and n not in PROFILES)]


def checker(name: str) -> Callable[[Path], list[Problem]]:
    from edgekit.runtimes.npu.profiles import PROFILES

    if name in PROFILES:
        from edgekit.runtimes.npu.check import check_file

        return lambda path: check_file(path, name)
    if name not in registry.REGISTRY:
        raise UsageError(f"--target {name!r}: unknown target; allowed: {', '.join(targets())}")
    info = registry.get(name)
    if not info.compatibility:
        raise UsageError(f"--target {name!r}: runtime {name} has no offline compatibility check; "
                         f"allowed: {', '.join(targets())}")
    return info.check


def model_files(path: Path, name: str) -> list[tuple[str, Path]]:
    """(label, file) pairs to check for target `name`: a bare .onnx file, or every ONNX (and,
    for a runtime that reads it, OpenVINO IR) artifact of an artifact directory."""
    from edgekit.runtimes.npu.profiles import PROFILES

    suffixes = (".onnx",) if name in PROFILES else (".onnx", ".xml")
    if path.is_file():
        if path.suffix not in suffixes:
            raise UsageError(f"{path}: --target {name} checks {' / '.join(suffixes)} files; got {path.suffix or 'no suffix'}")
        return [(path.name, path)]
    if not path.is_dir():
        raise UsageError(f"{path}: no such file or directory")
    from edgekit.artifact.manifest import read_manifest

    manifest = read_manifest(path)
    out = [(a["name"], path / a["path"]) for a in manifest["artifacts"] if Path(a["path"]).suffix in suffixes]
    if not out:
        raise UsageError(f"{path}: no {' / '.join(suffixes)} artifact for --target {name} to check")
    return out
