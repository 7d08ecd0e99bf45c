"""report.html from a real compress run: one self-contained page with every section, figures
inline, nothing fetched from the network; `edgekit report DIR` rebuilds it and keeps the
manifest's sha256 entries true."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekit.report.plots import pareto_front

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        if tag == "img":
            self.images.append(a)
        if tag == "script":
            self.scripts += 1
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_compress_writes_a_self_contained_report(digits_run) -> None:
    pytest.importorskip("matplotlib")
    page = parse(digits_run.out_dir / "report.html")
    assert page.sections == ["summary", "where-it-is-known-good", "latency", "accuracy-vs-latency", "size", "energy",
                             "quantization-sensitivity", "pruning", "sparsity", "stages", "environment"]
    assert page.scripts == 0
    assert all(u.startswith("data:image/png;base64,") for u in page.urls), page.urls
    alts = [i["alt"] for i in page.images]
    assert alts == ["latency CDF", "accuracy vs latency", "artifact sizes"]
    for img in page.images:
        assert base64.b64decode(img["src"].split(",", 1)[1]).startswith(PNG)
    text = (digits_run.out_dir / "report.html").read_text()
    # energy is shown with its provenance even when no meter ran; absent data is said, not hidden
    assert "unavailable" in text and "no sensitivity.json" in text and "no stage recorded per-layer sparsity" in text
    for key in digits_run.manifest["profile"]:
        assert key in text
    entry = next(f for f in digits_run.manifest["files"] if f["path"] == "report.html")
    assert entry["format"] == "html"
    md = (digits_run.out_dir / "report.md").read_text()
    assert "## Latency and energy" in md
    assert md.count("| unavailable: ") == len(digits_run.manifest["profile"])


def test_report_command_rebuilds_and_keeps_the_manifest_true(cli, digits_run, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    d = tmp_path / "copy"
    shutil.copytree(digits_run.out_dir, d)
    (d / "report.html").unlink()
    sens = {"method": "one node quantized at a time", "samples": 8, "metric": "top1",
            "nodes": [{"node": f"/conv{i}/Conv", "sqnr_db": 30.0 + i, "metric": 0.9} for i in range(3)]
            + [{"node": "/fc/Gemm", "sqnr_db": float("inf")}]}
    (d / "sensitivity.json").write_text(json.dumps(sens))
    r = cli("report", d)
    assert r.exit_code == 0, r.output
    page = parse(d / "report.html")
    assert "sensitivity" in [i["alt"] for i in page.images]
    text = (d / "report.html").read_text()
    assert "4 nodes, 1 unchanged when quantized alone" in text and "top1 with only it quantized" in text
    manifest = json.loads((d / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["path"].startswith("report."):
            assert hashlib.sha256((d / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert sum(f["path"] == "report.html" for f in manifest["files"]) == 1


def test_without_matplotlib_the_page_says_how_to_get_figures(digits_run, monkeypatch) -> None:
    from edgekit.errors import BackendUnavailable
    from edgekit.report import html as report_html

    def missing(*args, **kwargs):
        raise BackendUnavailable("matplotlib is not installed; matplotlib needs: pip install 'edgekit[report]'")

    monkeypatch.setattr("edgekit.report.plots._pyplot", missing)
    text = report_html.render(digits_run.out_dir, digits_run.manifest)
    assert "<img" not in text
    assert len(re.findall(r"figure not drawn: .*?pip install &#x27;edgekit\[report\]&#x27;", text)) == 3


def test_a_malformed_sensitivity_file_is_named_in_the_page(digits_run, tmp_path: Path) -> None:
    from edgekit.report import html as report_html

    d = tmp_path / "copy"
    shutil.copytree(digits_run.out_dir, d)
    (d / "sensitivity.json").write_text(json.dumps({"layers": []}))
    text = report_html.render(d, digits_run.manifest)
    assert "sensitivity.json has an unexpected shape (KeyError" in text


def test_sparsity_recorded_by_a_stage_is_drawn(digits_run) -> None:
    """No pruning stage exists yet: the contract (`measured.sparsity = {layer: fraction}`) is
    exercised on a copy of the real manifest."""
    pytest.importorskip("matplotlib")
    import copy

    from edgekit.report import html as report_html

    m = copy.deepcopy(digits_run.manifest)
    m["stages"].append({"kind": "prune.magnitude", "seconds": 0.1, "outputs": [],
                        "measured": {"sparsity": {"features.0": 0.5, "features.4": 0.25}}})
    page = Page()
    page.feed(report_html.render(digits_run.out_dir, m))
    assert "sparsity prune.magnitude" in [i["alt"] for i in page.images]


def test_report_on_a_non_artifact_is_a_usage_error(cli, tmp_path: Path) -> None:
    r = cli("report", tmp_path)
    assert r.exit_code == 2 and "not an edgekit artifact" in r.output


points = st.lists(st.tuples(st.floats(0.01, 100), st.floats(0, 1)), min_size=1, max_size=30)


@given(pts=points, higher=st.booleans())
def test_pareto_front_is_exactly_the_undominated_points(pts, higher: bool) -> None:
    front = set(pareto_front(pts, higher))
    s = 1 if higher else -1

    def beats(a, b):
        return a[0] <= b[0] and s * a[1] >= s * b[1] and a != b

    for i, p in enumerate(pts):
        assert (i in front) == (not any(beats(q, p) for q in pts))
    assert front  # the fastest point with the best metric among the fastest is always on it
