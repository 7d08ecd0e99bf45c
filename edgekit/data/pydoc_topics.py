"""A real English text corpus that needs no download, for causal language models: the stdlib's
interactive help topics (`pydoc_data.topics`, one long document per topic such as 'assert' or
'formatstrings'). The text changes with the Python version, so its hash and the version are part
of what a run records about its data."""

from __future__ import annotations

import hashlib
import json
import platform
from functools import lru_cache

SPLITS = ("train", "test", "all")

# a key whose sha256 starts with a byte below this goes to `test` (51/256, about 20%)
TEST_BYTE = 51


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return topics


def is_test(key: str) -> bool:
    """The split follows each topic's name, not its position, so a Python version that adds or
    drops a topic moves no other topic between train and test."""
    return hashlib.sha256(key.encode("utf-8")).digest()[0] < TEST_BYTE


def keys(split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"pydoc_topics split {split!r}; allowed: {', '.join(SPLITS)}")
    all_ = sorted(_topics())
    if split == "all":
        return all_
    want = split == "test"
    return [k for k in all_ if is_test(k) == want]


def documents(split: str) -> list[str]:
    """The help texts of `split`, ordered by topic key."""
    topics = _topics()
    return [topics[k] for k in keys(split)]


@lru_cache(maxsize=1)
def sha256() -> str:
    """Hash of the whole corpus (every split), so two runs can tell they saw the same text."""
    blob = json.dumps(_topics(), sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def python_version() -> str:
    return platform.python_version()
