"""Every figure in the docs comes from a committed benchmark result file: the docs equal what
benchmarks/render.py makes of benchmarks/results/, and every results file says where, when and
how it was measured."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import render
from benchmarks._results import METADATA_KEYS, load_all, table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _doc(benchmark: str, cpu_class: str, rows: list[list[str]], command: str) -> dict:
    return {"benchmark": benchmark, "cpu_class": cpu_class, "cpu_model": "Test CPU", "date": "2030-01-02T03:04:05Z",
            "command": command, "edgekit_version": "0.1.0", "versions": {"onnxruntime": "9.9.9", "tensorrt": None},
            "tables": [table("widgets vs gadgets, 2 threads, 8 samples", ["variant", "ms", "speedup"], rows,
                             "speedup = gadget ms / widget ms.")],
            "result": {"rows": rows}}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A repository in miniature: two benchmark scripts, a results file for one, a README and a
    docs page with a block for each and the index."""
    (tmp_path / "benchmarks").mkdir()
    for name in ("alpha", "beta", "_results", "render"):
        (tmp_path / "benchmarks" / f"{name}.py").write_text("")
    res = tmp_path / "benchmarks" / "results" / "x86-test"
    res.mkdir(parents=True)
    (res / "alpha.json").write_text(json.dumps(_doc("alpha", "x86-test", [["fast | variant", "1.25", "2.50x"]],
                                                    "python -m benchmarks.alpha --quick")))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# Page {#top}\n\n## alpha {#alpha}\n\n<!-- results: index -->\n<!-- end results -->\n\n"
        "<!-- results: alpha -->\nstale text 0.5x\n<!-- end results -->\n\n"
        "```md\n<!-- results: alpha -->\n```\n\n"
        "text between\n\n<!-- results: beta -->\n<!-- end results -->\n")
    (tmp_path / "README.md").write_text("# Readme\n\n<!-- results: beta -->\nold\n<!-- end results -->\n")
    return tmp_path


def _block(text: str, name: str) -> str:
    m = re.search(rf"^<!-- results: {name} -->\n(.*?)^<!-- end results -->$", text, re.M | re.S)
    assert m, f"no {name} block"
    return m.group(1)


def test_committed_docs_equal_the_rendered_results():
    """Fails when a results block was edited by hand or not re-rendered after a run:
    `python -m benchmarks.render` fixes it."""
    stale = render.render(ROOT, check=True)
    assert not stale, ("results blocks differ from benchmarks/results/ (run `python -m benchmarks.render`): "
                       + ", ".join(str(p.relative_to(ROOT)) for p in stale))


def test_every_benchmark_has_a_block_in_the_benchmarks_page():
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for name in [*render.scripts(ROOT / "benchmarks"), render.INDEX]:
        assert f"<!-- results: {name} -->" in text, f"docs/benchmarks.md has no block for {name}"


def test_a_result_renders_its_table_class_and_command(tree):
    changed = render.render(tree)
    assert sorted(p.name for p in changed) == ["README.md", "page.md"]
    page = (tree / "docs" / "page.md").read_text()
    alpha = _block(page, "alpha")
    assert "stale text" not in alpha
    assert "**x86-test** · Test CPU · 2030-01-02T03:04:05Z · `python -m benchmarks.alpha --quick`" in alpha
    assert "edgekit 0.1.0; onnxruntime 9.9.9" in alpha and "tensorrt" not in alpha
    assert "**widgets vs gadgets, 2 threads, 8 samples**" in alpha
    assert "| variant | ms | speedup |\n|---|---|---|\n| fast \\| variant | 1.25 | 2.50x |" in alpha
    assert "speedup = gadget ms / widget ms." in alpha
    assert "```md\n<!-- results: alpha -->\n```" in page  # a marker inside a code fence is text
    # the index: a row per script, a column per class, the date where a result exists
    index = _block(page, "index")
    assert "| benchmark | x86-test |" in index
    assert "| [`alpha`](#alpha) | 2030-01-02 |" in index
    assert "| `beta` | – |" in index  # no anchor for beta on this page: no link
    # rendering again changes nothing, and check agrees
    assert render.render(tree) == []
    assert render.render(tree, check=True) == []
    assert render.main(["--check", "--root", str(tree)]) == 0


def test_a_missing_result_says_so_and_shows_no_figure(tree):
    render.render(tree)
    for text in ((tree / "docs" / "page.md").read_text(), (tree / "README.md").read_text()):
        beta = _block(text, "beta")
        assert "No result is committed yet" in beta and "`python -m benchmarks.beta`" in beta
        assert len(beta.strip().splitlines()) == 1
        assert not re.search(r"\d", beta), beta


def test_several_classes_render_sorted_by_name(tree):
    other = tree / "benchmarks" / "results" / "arm64"
    other.mkdir()
    (other / "alpha.json").write_text(json.dumps(_doc("alpha", "arm64", [["slow", "9.0", "1.00x"]],
                                                      "python -m benchmarks.alpha")))
    render.render(tree)
    page = (tree / "docs" / "page.md").read_text()
    alpha = _block(page, "alpha")
    assert alpha.index("**arm64**") < alpha.index("**x86-test**")
    assert "| benchmark | arm64 | x86-test |" in _block(page, "index")


def test_a_hand_edited_block_fails_the_check(tree, capsys):
    render.render(tree)
    page = tree / "docs" / "page.md"
    page.write_text(page.read_text().replace("| 1.25 |", "| 1.10 |"))
    assert render.render(tree, check=True) == [page]
    assert render.main(["--check", "--root", str(tree)]) == 1
    assert "docs/page.md" in capsys.readouterr().err
    assert page.read_text().count("| 1.10 |") == 1  # check writes nothing
    render.render(tree)
    assert "| 1.25 |" in page.read_text()


def test_a_new_result_file_fails_the_check_until_rendered(tree):
    render.render(tree)
    shutil.copy(tree / "benchmarks" / "results" / "x86-test" / "alpha.json",
                tree / "benchmarks" / "results" / "x86-test" / "beta.json")
    data = json.loads((tree / "benchmarks" / "results" / "x86-test" / "beta.json").read_text())
    data["benchmark"] = "beta"
    (tree / "benchmarks" / "results" / "x86-test" / "beta.json").write_text(json.dumps(data))
    assert {p.name for p in render.render(tree, check=True)} == {"README.md", "page.md"}


def test_an_unterminated_block_is_an_error(tree):
    (tree / "docs" / "page.md").write_text("<!-- results: alpha -->\ntext\n")
    with pytest.raises(render.RenderError, match="no '<!-- end results -->'"):
        render.render(tree, check=True)
    assert render.main(["--check", "--root", str(tree)]) == 2


def test_cells_are_escaped_for_markdown():
    assert render.cell("a | b") == "a \\| b"
    assert render.cell("`x | y` | z") == "`x | y` \\| z"
    assert render.cell("<b> {x}") == "&lt;b> \\{x\\}"
    assert render.cell("two\nlines") == "two lines"


def test_every_committed_result_file_is_complete():
    scripts = set(render.scripts(ROOT / "benchmarks"))
    for doc in load_all(RESULTS):
        path = Path(doc["_path"])
        missing = [k for k in METADATA_KEYS if k not in doc]
        assert not missing, f"{path}: missing {missing}"
        assert doc["benchmark"] in scripts, f"{path}: no script benchmarks/{doc['benchmark']}.py"
        assert path.name == f"{doc['benchmark']}.json" and path.parent.name == doc["cpu_class"], path
        assert doc["command"].startswith(f"python -m benchmarks.{doc['benchmark']}"), path
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["date"]), path
        assert isinstance(doc["versions"], dict) and "onnxruntime" in doc["versions"], path
        assert doc["tables"], f"{path}: no tables"
        for t in doc["tables"]:
            assert set(t) == {"title", "headers", "rows", "notes"}, path
            assert t["title"] and all(isinstance(h, str) for h in t["headers"]), path
            assert all(isinstance(v, str) for row in t["rows"] for v in row), f"{path}: {t['title']}: a cell not a str"
