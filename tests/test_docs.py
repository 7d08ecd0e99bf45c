"""The documentation: the MkDocs site builds in strict mode (every page in the nav, every link
and anchor resolves), the README stays short, and nothing cites notes that users do not have."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
# spelled in two parts so that this file does not match its own search
PRIVATE_NOTES = ("FACTS" + ".md", "DESIGN" + ".md")


def test_mkdocs_builds_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it at most {README_MAX_LINES} and move detail to docs/")


def test_no_tracked_file_cites_private_notes():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    this = Path(__file__).resolve()
    hits = []
    for name in filter(None, files.decode("utf-8", "surrogateescape").split("\0")):
        path = ROOT / name
        if not path.is_file() or path.resolve() == this:
            continue  # deleted or moved in the working tree, or this file
        data = path.read_bytes()
        for note in PRIVATE_NOTES:
            if note.encode() in data:
                hits.append(f"{name}: cites {note}")
    assert not hits, "state these facts in the file's own words instead:\n" + "\n".join(hits)

