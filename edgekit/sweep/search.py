"""Which settings to try next: every combination (grid), a seeded sample without repeats
(random), or a model-based search (Optuna's TPE, asked and told in this process while Ray runs
the trials). All three answer the same two calls, so the executor does not care which it has."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any, Optional

Settings = dict[str, Any]


def key(settings: Settings) -> str:
    return json.dumps(settings, sort_keys=True)


def grid(vary: dict[str, list[Any]]) -> list[Settings]:
    names = list(vary)
    return [dict(zip(names, combo)) for combo in itertools.product(*(vary[n] for n in names))]


def sample(vary: dict[str, list[Any]], n: int, seed: int) -> list[Settings]:
    """`n` distinct combinations drawn with `seed`: the same file gives the same trials, so a
    re-run finds them all in the cache."""
    names = list(vary)
    sizes = [len(vary[k]) for k in names]
    total = 1
    for s in sizes:
        total *= s
    if n > total:
        raise ValueError(f"{n} trials asked, only {total} distinct settings exist")
    picks = random.Random(seed).sample(range(total), n)
    out = []
    for flat in picks:
        idx = []
        for s in reversed(sizes):
            flat, r = divmod(flat, s)
            idx.append(r)
        out.append({k: vary[k][i] for k, i in zip(names, reversed(idx))})
    return out


class ListSearch:
    """Grid and random: the list is known up front; results do not change it."""

    def __init__(self, points: list[Settings]) -> None:
        self._points = list(points)
        self._next = 0

    def ask(self, n: int) -> list[Settings]:
        out = self._points[self._next:self._next + n]
        self._next += len(out)
        return out

    def tell(self, settings: Settings, value: Optional[float]) -> None:
        pass

    @property
    def total(self) -> int:
        return len(self._points)


class TpeSearch:
    """Optuna TPE over the categorical choices of `vary` (choices are indices, since values may be
    lists). A failed or infeasible trial is told as failed, so TPE learns to avoid it without a
    made-up penalty value."""

    def __init__(self, vary: dict[str, list[Any]], n: int, seed: int) -> None:
        from edgekit.core.backends import require

        optuna = require("optuna", extra="sweep", why="search.method: tpe")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self._vary = vary
        self._dist = {k: optuna.distributions.CategoricalDistribution(list(range(len(v)))) for k, v in vary.items()}
        self._study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        self._open: dict[str, list[Any]] = {}
        self._asked = 0
        self.total = n

    def ask(self, n: int) -> list[Settings]:
        out = []
        while len(out) < n and self._asked < self.total:
            trial = self._study.ask(self._dist)
            settings = {k: self._vary[k][trial.params[k]] for k in self._vary}
            self._open.setdefault(key(settings), []).append(trial)
            self._asked += 1
            out.append(settings)
        return out

    def tell(self, settings: Settings, value: Optional[float]) -> None:
        from optuna.trial import TrialState

        for trial in self._open.pop(key(settings), []):
            if value is None:
                self._study.tell(trial, state=TrialState.FAIL)
            else:
                self._study.tell(trial, value)


def make(method: str, vary: dict[str, list[Any]], trials: Optional[int], seed: int) -> Any:
    if method == "grid":
        return ListSearch(grid(vary))
    if method == "random":
        return ListSearch(sample(vary, trials or 1, seed))
    return TpeSearch(vary, trials or 1, seed)
