"""Text data for causal language models: a recipe's text source (builtin pydoc_topics, a text
file, a jsonl file, a python entrypoint) loaded as documents, then cut into fixed-length token
windows. Kept apart from `edgekit.sources.data`, whose samples take their shape from the model's
declared inputs; a causal LM's samples take theirs from `seq_len`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edgekit.errors import DataError

TEXT_BUILTINS = ("pydoc_topics",)


@dataclass
class TextSource:
    """Documents as loaded, and what a manifest records to tell two runs' data apart."""

    name: str
    texts: list[str]
    identity: dict[str, Any] = dc_field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def is_text_spec(spec: Any) -> bool:
    """True for the sources that can only be text. A `python` entrypoint is text or tensors
    depending on the model, which this function does not see: the caller decides (a causal LM's
    recipe passes it to `load_text`)."""
    return bool(spec.builtin in TEXT_BUILTINS or getattr(spec, "text", None) or getattr(spec, "jsonl", None))


def texts_sha256(texts: list[str]) -> str:
    """Hash of the documents with their boundaries (a length prefix each), so moving text from
    one document to the next changes it."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _resolve(ref: str, base_dir: Path, where: str) -> Path:
    path = Path(ref)
    path = path if path.is_absolute() else Path(base_dir) / path
    if not path.is_file():
        raise DataError(f"{where}: file not found: {path}")
    return path


def _read(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: {path} is not UTF-8 text (byte {exc.start} cannot be decoded); "
                        "allowed: a UTF-8 text file") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read {path}: {exc.strerror or type(exc).__name__}") from None


def _pydoc_topics(spec: Any) -> TextSource:
    from edgekit.data import pydoc_topics

    split = spec.split or "train"  # outside a recipe (no DataSection default): never the held-out text
    texts = pydoc_topics.documents(split)
    ident = {"corpus_sha256": pydoc_topics.sha256(), "python": pydoc_topics.python_version()}
    return TextSource(f"builtin:pydoc_topics/{split}", texts, {"source": "builtin:pydoc_topics", "split": split,
                                                             **ident})


def _text_file(spec: Any, field_name: str, base_dir: Path) -> TextSource:
    where = f"{field_name}.text"
    path = _resolve(spec.text, base_dir, where)
    text = _read(path, where)
    texts = [text] if text.strip() else []
    return TextSource(f"text:{path.name}", texts, {"source": f"text:{path}", "split": None})


def _jsonl(spec: Any, field_name: str, base_dir: Path) -> TextSource:
    where = f"{field_name}.jsonl"
    path = _resolve(spec.jsonl, base_dir, where)
    key = spec.field
    texts: list[str] = []
    for lineno, line in enumerate(_read(path, where).splitlines(), start=1):
        if not line.strip():
            continue  # a trailing newline or a blank separator line is no record
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: {path.name} line {lineno} is not valid JSON ({exc.msg} at column "
                            f"{exc.colno}); allowed: one JSON object a line with a string {key!r}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: {path.name} line {lineno} is a JSON {type(obj).__name__}; allowed: "
                            f"a JSON object with a string {key!r}")
        if key not in obj:
            keys = ", ".join(map(repr, sorted(obj)[:8])) or "none"
            raise DataError(f"{where}: {path.name} line {lineno} has no field {key!r} (its keys: {keys}); "
                            f"set {field_name}.field to the key that holds the text")
        value = obj[key]
        if not isinstance(value, str):
            raise DataError(f"{where}: {path.name} line {lineno} field {key!r} is a JSON "
                            f"{type(value).__name__}; allowed: a string")
        texts.append(value)
    return TextSource(f"jsonl:{path.name}", texts, {"source": f"jsonl:{path}", "field": key, "split": None})


def _python(spec: Any, field_name: str) -> TextSource:
    from edgekit.sources.entrypoint import import_entrypoint

    fn = import_entrypoint(spec.python, f"{field_name}.python")
    where = f"{field_name}.python: {spec.python}(split={spec.split!r})"
    try:  # the user's code: whatever it raises is a data failure named by the field
        result = fn(split=spec.split)
    except Exception as exc:
        raise DataError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, (list, tuple)):
        raise DataError(f"{where} returned {type(result).__name__}; allowed: a list of strings "
                        "(one document each)")
    for i, item in enumerate(result):
        if not isinstance(item, str):
            raise DataError(f"{where} returned a list whose item {i} is {type(item).__name__}; allowed: "
                            "a list of strings (one document each)")
    return TextSource(f"python:{spec.python}", list(result), {"source": f"python:{spec.python}",
                                                             "split": spec.split})


def load_text(spec: Any, field_name: str, base_dir: Path, python_ok: bool = True) -> TextSource:
    """The documents a text spec names. Splits apply to pydoc_topics and python entrypoints; a
    text or jsonl file is the user's own split, used whole (name another file to evaluate)."""
    if spec.builtin in TEXT_BUILTINS:
        src = _pydoc_topics(spec)
    elif getattr(spec, "text", None):
        src = _text_file(spec, field_name, base_dir)
    elif getattr(spec, "jsonl", None):
        src = _jsonl(spec, field_name, base_dir)
    elif spec.python and python_ok:
        src = _python(spec, field_name)
    else:
        given = f"builtin {spec.builtin}" if spec.builtin else ("npz" if spec.npz else "python")
        allowed = "builtin pydoc_topics, text, jsonl" + (", python" if python_ok else "")
        raise DataError(f"{field_name}: {given} is not a text source; allowed for this model: {allowed}")
    if not src.texts or not any(t.strip() for t in src.texts):
        raise DataError(f"{field_name}: the text source {src.name!r} yields no text; at least 1 non-empty "
                        "document is needed")
    src.identity.update(documents=len(src.texts), characters=sum(map(len, src.texts)),
                        sha256=texts_sha256(src.texts))
    return src


def token_windows(texts: list[str], encode: Callable[[str], list[int]], seq_len: int, samples: Optional[int],
                  field_name: str, sep: Optional[int] = None) -> np.ndarray:
    """Non-overlapping windows of exactly `seq_len` tokens over the documents joined into one
    stream (with `sep`, e.g. the EOS id, between them), so that no window is padded and every
    token a causal LM is scored on has real context. The tail shorter than a window is dropped;
    asking for more windows than exist is an error, never silently fewer."""
    if seq_len < 1:
        raise DataError(f"{field_name}.seq_len: got {seq_len}; allowed: a positive number of tokens")
    stream: list[int] = []
    for i, text in enumerate(texts):
        if i and sep is not None:
            stream.append(int(sep))
        stream.extend(int(t) for t in encode(text))
    n = len(stream) // seq_len
    if n == 0:
        raise DataError(f"{field_name}: the text gives {len(stream)} tokens, fewer than one window of seq_len "
                        f"{seq_len}; allowed: a smaller seq_len or more text")
    if samples is not None and samples > n:
        raise DataError(f"{field_name}.samples: got {samples}; the text gives {len(stream)} tokens, {n} windows "
                        f"of seq_len {seq_len}; allowed: at most {n}")
    keep = n if samples is None else samples
    return np.asarray(stream[: keep * seq_len], dtype=np.int64).reshape(keep, seq_len)
