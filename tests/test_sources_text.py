"""Text sources for causal LMs: the built-in pydoc_topics corpus (real stdlib text), text and
jsonl files, python entrypoints, the token windows cut from them, and the recipe errors a text
DataSpec gives."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.data import pydoc_topics
from edgekit.errors import DataError, RecipeError
from edgekit.recipe import parse_recipe
from edgekit.recipe.sections import DataSpec
from edgekit.sources.text import TextSource, is_text_spec, load_text, texts_sha256, token_windows
from tests.conftest import RECIPES

FIELD = "data.calibration"


def spec(**kw) -> DataSpec:
    return DataSpec(**kw)


# --- pydoc_topics ------------------------------------------------------------------------------


def test_pydoc_topics_split_is_disjoint_and_covers_all():
    train, test, all_ = (pydoc_topics.keys(s) for s in ("train", "test", "all"))
    assert set(train).isdisjoint(test)
    assert sorted(set(train) | set(test)) == all_
    assert train == sorted(train) and test == sorted(test)
    # about 20% held out; every key's side follows from its name alone
    assert 0.1 < len(test) / len(all_) < 0.3
    assert all(pydoc_topics.is_test(k) for k in test) and not any(pydoc_topics.is_test(k) for k in train)


def test_pydoc_topics_split_depends_on_the_key_not_the_position(monkeypatch):
    import hashlib

    for key in pydoc_topics.keys("all"):
        assert pydoc_topics.is_test(key) == (hashlib.sha256(key.encode()).digest()[0] < 51)
    # a Python version that drops topics (here: every other one) moves no remaining topic
    test = set(pydoc_topics.keys("test"))
    kept = {k: v for i, (k, v) in enumerate(sorted(pydoc_topics._topics().items())) if i % 2}
    monkeypatch.setattr(pydoc_topics, "_topics", lambda: kept)
    assert set(pydoc_topics.keys("test")) == test & set(kept)
    assert set(pydoc_topics.keys("train")) == set(kept) - test


def test_pydoc_topics_loads_deterministically_with_its_identity():
    a = load_text(spec(builtin="pydoc_topics", split="train"), FIELD, Path("."))
    b = load_text(spec(builtin="pydoc_topics", split="train"), FIELD, Path("."))
    assert isinstance(a, TextSource) and a.name == "builtin:pydoc_topics/train"
    assert a.texts == b.texts and a.identity == b.identity
    assert a.identity["sha256"] == texts_sha256(a.texts)
    assert a.identity["corpus_sha256"] == pydoc_topics.sha256() and len(pydoc_topics.sha256()) == 64
    assert a.identity["python"] == pydoc_topics.python_version()
    assert a.identity["split"] == "train"
    assert a.identity["documents"] == len(pydoc_topics.keys("train")) == len(a)
    assert a.identity["characters"] == sum(map(len, a.texts)) > 100_000

    test = load_text(spec(builtin="pydoc_topics", split="test"), FIELD, Path("."))
    all_ = load_text(spec(builtin="pydoc_topics", split="all"), FIELD, Path("."))
    assert set(a.texts).isdisjoint(test.texts)
    assert len(a) + len(test) == len(all_)
    assert a.identity["characters"] + test.identity["characters"] == all_.identity["characters"]
    assert len({a.identity["sha256"], test.identity["sha256"], all_.identity["sha256"]}) == 3


def test_is_text_spec():
    assert is_text_spec(spec(builtin="pydoc_topics"))
    assert is_text_spec(spec(text="a.txt"))
    assert is_text_spec(spec(jsonl="a.jsonl", field="t"))
    assert not is_text_spec(spec(builtin="digits"))
    assert not is_text_spec(spec(builtin="sentences"))
    assert not is_text_spec(spec(npz="a.npz"))
    assert not is_text_spec(spec(python="pkg.mod:fn"))  # the caller decides from the model


# --- files ---------------------------------------------------------------------------------------


def test_text_file_loads_whole_relative_to_base_dir(tmp_path):
    body = "first paragraph\n\nsecond paragraph — ünïcode\n"
    (tmp_path / "corpus.txt").write_text(body, encoding="utf-8")
    src = load_text(spec(text="corpus.txt"), FIELD, tmp_path)
    assert src.texts == [body] and src.name == "text:corpus.txt"
    assert src.identity["documents"] == 1 and src.identity["characters"] == len(body)
    assert src.identity["sha256"] == texts_sha256([body])


def test_text_file_missing_and_not_utf8(tmp_path):
    with pytest.raises(DataError, match=r"^data\.calibration\.text: file not found: .*nope\.txt$"):
        load_text(spec(text="nope.txt"), FIELD, tmp_path)
    (tmp_path / "bin.txt").write_bytes(b"ok\xff\xfe")
    with pytest.raises(DataError, match=r"bin\.txt is not UTF-8 text \(byte 2") as e:
        load_text(spec(text="bin.txt"), FIELD, tmp_path)
    assert "\n" not in str(e.value)


def test_empty_text_file_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_text(" \n\n")
    with pytest.raises(DataError, match=r"^data\.calibration: the text source 'text:empty\.txt' yields no text"):
        load_text(spec(text="empty.txt"), FIELD, tmp_path)


def test_jsonl_loads_the_field_of_each_line(tmp_path):
    rows = [{"text": "alpha beta", "id": 1}, {"text": "gamma", "id": 2}, {"text": "δ", "meta": {"x": 1}}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    src = load_text(spec(jsonl="d.jsonl", field="text"), FIELD, tmp_path)
    assert src.texts == ["alpha beta", "gamma", "δ"]
    assert src.name == "jsonl:d.jsonl" and src.identity["field"] == "text" and src.identity["documents"] == 3


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(DataError) as e:
        load_text(spec(jsonl="d.jsonl", field="text"), FIELD, tmp_path)
    msg = str(e.value)
    assert msg.startswith("data.calibration.jsonl: d.jsonl line 3 is not valid JSON (")
    assert "'text'" in msg and "\n" not in msg


def test_jsonl_missing_field_names_line_and_field(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "ok"}\n{"body": "no text key", "id": 7}\n')
    with pytest.raises(DataError) as e:
        load_text(spec(jsonl="d.jsonl", field="text"), FIELD, tmp_path)
    assert str(e.value) == ("data.calibration.jsonl: d.jsonl line 2 has no field 'text' (its keys: 'body', 'id'); "
                            "set data.calibration.field to the key that holds the text")


def test_jsonl_non_object_and_non_string_field(tmp_path):
    (tmp_path / "a.jsonl").write_text('["a list"]\n')
    with pytest.raises(DataError, match=r"a\.jsonl line 1 is a JSON list; allowed: a JSON object"):
        load_text(spec(jsonl="a.jsonl", field="text"), FIELD, tmp_path)
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(DataError, match=r"b\.jsonl line 2 field 'text' is a JSON int; allowed: a string"):
        load_text(spec(jsonl="b.jsonl", field="text"), FIELD, tmp_path)


# --- python entrypoints ---------------------------------------------------------------------------


def _module(tmp_path, monkeypatch, body: str) -> str:
    """A fresh importable module (unique name: no stale import between tests)."""
    name = f"textsrc_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_python_entrypoint_returning_strings(tmp_path, monkeypatch):
    mod = _module(tmp_path, monkeypatch, "def docs(split):\n    return [f'{split} one', f'{split} two']\n")
    src = load_text(spec(python=f"{mod}:docs", split="test"), FIELD, tmp_path)
    assert src.texts == ["test one", "test two"] and src.identity["split"] == "test"


@pytest.mark.parametrize("ret,what", [
    ("'just one string'", "returned str; allowed: a list of strings"),
    ("{'a': 'b'}", "returned dict; allowed: a list of strings"),
    ("['ok', 3]", "returned a list whose item 1 is int; allowed: a list of strings"),
])
def test_python_entrypoint_returning_something_else_is_refused(tmp_path, monkeypatch, ret, what):
    mod = _module(tmp_path, monkeypatch, f"def docs(split):\n    return {ret}\n")
    with pytest.raises(DataError) as e:
        load_text(spec(python=f"{mod}:docs"), FIELD, tmp_path)
    assert str(e.value).startswith(f"data.calibration.python: {mod}:docs(split=None) {what}")
    assert "\n" not in str(e.value)


def test_python_entrypoint_that_raises_or_is_refused(tmp_path, monkeypatch):
    mod = _module(tmp_path, monkeypatch, "def docs(split):\n    raise RuntimeError('no corpus here')\n")
    with pytest.raises(DataError, match=r"docs\(split=None\) failed: RuntimeError: no corpus here"):
        load_text(spec(python=f"{mod}:docs"), FIELD, tmp_path)
    with pytest.raises(DataError, match=r"^data\.calibration: python is not a text source; allowed for this "
                                        r"model: builtin pydoc_topics, text, jsonl$"):
        load_text(spec(python=f"{mod}:docs"), FIELD, tmp_path, python_ok=False)
    with pytest.raises(DataError, match=r"builtin digits is not a text source"):
        load_text(spec(builtin="digits"), FIELD, tmp_path)


# --- token windows ----------------------------------------------------------------------------------


def _lookup(docs: list[list[int]]):
    """Texts '0', '1', ... whose encoding is the given token list: windows over known streams."""
    return [str(i) for i in range(len(docs))], (lambda t: docs[int(t)])


@settings(max_examples=200, deadline=None)
@given(
    docs=st.lists(st.lists(st.integers(0, 50_000), max_size=60), min_size=1, max_size=8),
    seq_len=st.integers(1, 40),
    samples=st.none() | st.integers(1, 30),
    sep=st.none() | st.integers(0, 50_000),
)
def test_token_windows_are_consecutive_slices_of_the_stream(docs, seq_len, samples, sep):
    texts, encode = _lookup(docs)
    stream: list[int] = []
    for i, d in enumerate(docs):
        stream += ([sep] if i and sep is not None else []) + d
    n = len(stream) // seq_len
    if n == 0 or (samples is not None and samples > n):
        with pytest.raises(DataError):
            token_windows(texts, encode, seq_len, samples, FIELD, sep=sep)
        return
    w = token_windows(texts, encode, seq_len, samples, FIELD, sep=sep)
    assert w.dtype == np.int64 and w.ndim == 2
    assert w.shape == (min(samples or n, n), seq_len)
    for k, row in enumerate(w):
        assert row.tolist() == stream[k * seq_len : (k + 1) * seq_len]


def test_token_windows_too_few_tokens():
    texts, encode = _lookup([[1, 2, 3], [4, 5]])
    with pytest.raises(DataError) as e:
        token_windows(texts, encode, 8, None, FIELD, sep=0)
    assert str(e.value) == ("data.calibration: the text gives 6 tokens, fewer than one window of seq_len 8; "
                            "allowed: a smaller seq_len or more text")


def test_token_windows_too_many_samples_is_never_silently_fewer():
    texts, encode = _lookup([list(range(25))])
    assert token_windows(texts, encode, 8, 3, FIELD).shape == (3, 8)
    with pytest.raises(DataError) as e:
        token_windows(texts, encode, 8, 4, FIELD)
    assert str(e.value) == ("data.calibration.samples: got 4; the text gives 25 tokens, 3 windows of seq_len 8; "
                            "allowed: at most 3")


@pytest.fixture(scope="module")
def tiny_bpe():
    """A real byte-level BPE (vocab 300) trained on a few stdlib sources: about a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    import bisect, colorsys, heapq, textwrap

    files = [m.__file__ for m in (textwrap, heapq, bisect, colorsys)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train(files, trainer)
    return tok


def test_pydoc_topics_train_windows_with_a_real_tokenizer(tiny_bpe):
    src = load_text(spec(builtin="pydoc_topics", split="train", seq_len=128), FIELD, Path("."))
    eos = tiny_bpe.token_to_id("<eos>")
    assert tiny_bpe.get_vocab_size() <= 300 and eos is not None

    def encode(text: str) -> list[int]:
        return tiny_bpe.encode(text).ids

    w = token_windows(src.texts, encode, 128, None, FIELD, sep=eos)
    again = token_windows(src.texts, encode, 128, 16, FIELD, sep=eos)
    assert w.dtype == np.int64 and w.shape[1] == 128 and w.shape[0] > 100
    assert np.array_equal(again, w[:16])
    assert 0 <= w.min() and w.max() < tiny_bpe.get_vocab_size()
    # the windows are the documents' encodings joined by EOS, in key order, tail dropped
    stream: list[int] = []
    for i, text in enumerate(src.texts):
        stream += ([eos] if i else []) + encode(text)
    assert w.ravel().tolist() == stream[: w.size] and len(stream) - w.size < 128
    # byte-level BPE is lossless: the first window decodes to the corpus' opening text
    first = tiny_bpe.decode(w[0].tolist())
    assert len(first) > 128 and src.texts[0].startswith(first.rstrip("\ufffd"))


# --- recipe errors ----------------------------------------------------------------------------------

BASE = yaml.safe_load((RECIPES / "int8_pc.yaml").read_text())

RECIPE_CASES = [
    ("text and builtin", {"builtin": "pydoc_topics", "text": "c.txt"},
     "r.yaml: data.calibration: give exactly one of builtin, npz, python, text, jsonl (got ['builtin', 'text'])"),
    ("no source", {"samples": 4},
     "r.yaml: data.calibration: give exactly one of builtin, npz, python, text, jsonl (got none)"),
    ("jsonl without field", {"jsonl": "d.jsonl"},
     "r.yaml: data.calibration: jsonl 'd.jsonl' needs field: the JSON key that holds each line's text"),
    ("field without jsonl", {"text": "c.txt", "field": "text"},
     "r.yaml: data.calibration: field 'text' applies only to jsonl; the source here is text"),
    ("seq_len on npz", {"npz": "x.npz", "seq_len": 64},
     "r.yaml: data.calibration: seq_len 64 applies only to text sources (builtin pydoc_topics, text, jsonl, "
     "python); the source here is npz"),
    ("seq_len too small", {"builtin": "pydoc_topics", "seq_len": 4},
     "r.yaml: data.calibration.seq_len: Input should be greater than or equal to 8; got 4"),
    ("unknown builtin", {"builtin": "wikitext"},
     "r.yaml: data.calibration.builtin: got 'wikitext'; allowed: 'digits', 'digits_seg', 'sentences' or "
     "'pydoc_topics'"),
]


@pytest.mark.parametrize("label,calibration,message", RECIPE_CASES, ids=[c[0] for c in RECIPE_CASES])
def test_text_data_spec_golden_recipe_errors(label, calibration, message):
    data = copy.deepcopy(BASE)
    data["data"]["calibration"] = calibration
    with pytest.raises(RecipeError) as e:
        parse_recipe(data, "r.yaml")
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("calibration", [
    {"builtin": "pydoc_topics", "seq_len": 256, "samples": 32},
    {"text": "c.txt", "seq_len": 64},
    {"jsonl": "d.jsonl", "field": "text", "seq_len": 8},
    {"python": "pkg.mod:docs", "seq_len": 64},
    {"builtin": "digits", "samples": 16},  # an encoder source as before
])
def test_text_data_specs_parse(calibration):
    data = copy.deepcopy(BASE)
    data["data"]["calibration"] = calibration
    recipe = parse_recipe(data, "r.yaml")
    assert recipe.data.calibration.split == "train"
    # a dumped recipe (defaults included, as sweeps write it) parses again
    parse_recipe(recipe.model_dump(mode="json"), "r.yaml")
