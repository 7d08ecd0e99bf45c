"""Resolve a recipe's data spec (builtin / npz / python entrypoint) into a Dataset whose
samples are feeds with exactly the model's input names and shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgekit.errors import DataError
from edgekit.stages.state import Dataset


def _pick(n: int, samples: Optional[int], seed: int) -> np.ndarray:
    idx = np.arange(n)
    if samples is not None and samples < n:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=samples, replace=False))
    return idx


def _one_input(example: dict[str, np.ndarray], field: str, what: str) -> tuple[str, np.ndarray]:
    if len(example) != 1:
        raise DataError(f"{field}: builtin {what} feeds one input, the model takes {list(example)}")
    return next(iter(example.items()))


def _digits(spec: Any, example: dict[str, np.ndarray], field: str) -> Dataset:
    """`digits` labels each image with its digit; `digits_seg` labels each of its 64 patches
    (`digits.token_labels`), for dense heads. Same images, same split."""
    from edgekit.data.digits import split, token_labels

    name, ex = _one_input(example, field, spec.builtin)
    x, y, orig = split()[spec.split]
    if tuple(ex.shape[1:]) != x.shape[1:] or ex.shape[0] != 1:
        raise DataError(
            f"{field}: builtin {spec.builtin} gives samples of shape [1, 1, 32, 32] but input {name!r} is "
            f"{list(ex.shape)}"
        )
    idx = _pick(len(x), spec.samples, spec.seed)
    labels = token_labels(orig[idx]) if spec.builtin == "digits_seg" else y[idx]
    return Dataset(f"{spec.builtin}/{spec.split}", [{name: x[i : i + 1]} for i in idx], labels,
                   [int(orig[i]) for i in idx])


def _sentences(spec: Any, example: dict[str, np.ndarray], field: str, model_info: dict) -> Dataset:
    from edgekit.data.sentences import split
    from edgekit.sources.hf import minilm_dir, tokenizer_for

    needed = {"input_ids", "attention_mask"}
    if not needed <= set(example):
        raise DataError(f"{field}: builtin sentences feeds input_ids and attention_mask; the model takes {list(example)}")
    seq = example["input_ids"].shape[1]
    tok = tokenizer_for(model_info.get("hf_dir") or minilm_dir())
    texts = split(spec.split)
    idx = _pick(len(texts), spec.samples, spec.seed)
    samples = []
    for i in idx:
        enc = tok(texts[i], padding="max_length", truncation=True, max_length=seq, return_tensors="np")
        feeds = {k: enc[k].astype(example[k].dtype) for k in example if k in enc}
        if set(feeds) != set(example):
            missing = sorted(set(example) - set(feeds))
            raise DataError(f"{field}: the tokenizer gives no {missing} for the model's inputs")
        samples.append(feeds)
    return Dataset(f"sentences/{spec.split}", samples, None, [int(i) for i in idx])


def _npz(spec: Any, example: dict[str, np.ndarray], field: str, base_dir: Path) -> Dataset:
    path = Path(spec.npz)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise DataError(f"{field}.npz: file not found: {path}")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    missing = [k for k in example if k not in arrays]
    if missing:
        raise DataError(f"{field}.npz: {path.name} has no array named {missing}; it has {sorted(arrays)}")
    n = len(arrays[next(iter(example))])
    for k, ex in example.items():
        if arrays[k].shape[1:] != ex.shape[1:] or len(arrays[k]) != n:
            raise DataError(
                f"{field}.npz: array {k!r} has shape {list(arrays[k].shape)}; expected [N, {', '.join(map(str, ex.shape[1:]))}]"
            )
    labels = arrays.get("labels")
    if labels is not None and len(labels) != n:
        raise DataError(f"{field}.npz: {path.name} has {len(labels)} labels for {n} samples; they must match")
    idx = _pick(n, spec.samples, spec.seed)
    samples = [{k: arrays[k][i : i + 1].astype(ex.dtype) for k, ex in example.items()} for i in idx]
    return Dataset(f"npz:{path.name}", samples, labels[idx] if labels is not None else None, [int(i) for i in idx])


def _python(spec: Any, example: dict[str, np.ndarray], field: str) -> Dataset:
    from edgekit.sources.entrypoint import import_entrypoint

    fn = import_entrypoint(spec.python, f"{field}.python")
    where = f"{field}.python: {spec.python}(split={spec.split!r})"
    try:  # the user's code: whatever it raises, or yields, is a data failure named by the field
        result = fn(split=spec.split)
        if isinstance(result, Dataset):
            ds = result
        else:
            samples, labels = [], []
            for i, item in enumerate(result):
                feeds, label = (item if isinstance(item, tuple) else (item, None))
                if not isinstance(feeds, dict):
                    raise DataError(f"{where}: sample {i} is {type(feeds).__name__}; allowed: a dict of input name "
                                    "to array, or a (dict, label) tuple")
                samples.append({k: np.asarray(v) for k, v in feeds.items()})
                labels.append(label)
            lab = np.asarray(labels) if labels and all(v is not None for v in labels) else None
            ds = Dataset(spec.python, samples, lab, list(range(len(samples))))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
    for i, s in enumerate(ds.samples):
        if set(s) != set(example):
            raise DataError(f"{field}.python: sample {i} has inputs {sorted(s)}; the model takes {sorted(example)}")
        for k, ex in example.items():
            if s[k].shape != ex.shape:  # one sample per feed, exactly the model's input shape
                raise DataError(f"{field}.python: sample {i} input {k!r} has shape {list(s[k].shape)}; "
                                f"expected {list(ex.shape)}")
            s[k] = s[k].astype(ex.dtype, copy=False)
    idx = _pick(len(ds), spec.samples, spec.seed)
    return Dataset(ds.name, [ds.samples[i] for i in idx], ds.labels[idx] if ds.labels is not None else None,
                   [ds.ids[i] if ds.ids else int(i) for i in idx])


def load_data(spec: Any, example: dict[str, np.ndarray], field: str, base_dir: Path, model_info: dict) -> Dataset:
    from edgekit.sources.text import is_text_spec

    if is_text_spec(spec):  # text windows are a causal LM's data (sources/text.py)
        given = f"builtin {spec.builtin}" if spec.builtin else ("text" if spec.text else "jsonl")
        raise DataError(f"{field}: {given} is text, for a causal language model; this model takes tensors: allowed "
                        "builtin digits, digits_seg, sentences, npz or python")
    if spec.builtin in ("digits", "digits_seg"):
        ds = _digits(spec, example, field)
    elif spec.builtin == "sentences":
        ds = _sentences(spec, example, field, model_info)
    elif spec.npz:
        ds = _npz(spec, example, field, base_dir)
    else:
        ds = _python(spec, example, field)
    if len(ds) == 0:
        raise DataError(f"{field}: the data source {ds.name!r} yields no samples; at least 1 is needed")
    return ds
