"""`edgekit gate`: budgets, baseline and A/B comparisons, each a `Check`; the worst status
decides the exit code (1 fail > 4 unavailable > 3 inconclusive > 0 pass).

The checks are plain data so that the CLI table, the JUnit XML and the Markdown summary all
show the same verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from edgekit.errors import BackendUnavailable, EdgekitError, GateFailed, Inconclusive

Status = Literal["pass", "fail", "inconclusive", "unavailable"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "inconclusive", "unavailable")


@dataclass(frozen=True)
class Check:
    kind: str  # budget | baseline | ab
    name: str  # the budget (latency_p90_ms ...) or the comparison (median latency)
    subject: str  # <artifact>/<runtime>, or "base → candidate"
    status: Status
    measured: Optional[float]
    limit: Optional[float]
    unit: str
    detail: str


@dataclass
class GateResult:
    checks: list[Check]
    notes: list[str] = field(default_factory=list)

    def exit_code(self, strict: bool = False) -> int:
        statuses = {c.status for c in self.checks}
        if "fail" in statuses:
            return 1
        if "unavailable" in statuses:
            return 4
        if "inconclusive" in statuses:
            return 1 if strict else 3
        return 0

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    def verdict(self, strict: bool = False) -> str:
        code = self.exit_code(strict)
        n = self.counts()
        parts = ", ".join(f"{v} {k}" for k, v in n.items() if v)
        word = {0: "passed", 1: "FAILED", 3: "inconclusive", 4: "could not measure"}[code]
        return f"gate {word} ({parts}; exit {code})"

    def error(self, strict: bool = False) -> Optional[EdgekitError]:
        """The typed error the CLI raises after printing the table (None when the gate passed)."""
        code = self.exit_code(strict)
        if code == 0:
            return None
        worst = next(s for s in ("fail", "unavailable", "inconclusive") if any(c.status == s for c in self.checks))
        first = next(c for c in self.checks if c.status == worst)
        msg = f"{self.verdict(strict)}: first: {first.name} {first.subject}: {first.detail}"
        if code == 1:
            return GateFailed(msg)
        if code == 4:
            return BackendUnavailable(msg)
        return Inconclusive(msg)
