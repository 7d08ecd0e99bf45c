"""The measures a language-model user trusts, against the fp32 reference on held-out text, one
window at a time (a SmolLM2 window's logits are 100 MB, so nothing keeps them):

- perplexity of every artifact on every runtime (exp of the mean next-token negative log
  likelihood), and its increase over the reference's;
- teacher-forced next-token top-1 agreement with the reference;
- mean KL divergence per token, KL(reference || artifact) — llama.cpp's `--kl-divergence`;
- greedy continuations of a few prompts, compared token by token (first divergence kept).

Pure numpy in float64, so the sums over tens of thousands of tokens do not drift."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edgekit.errors import ParityError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@dataclass
class Tally:
    """Running sums over the windows scored so far (next-token predictions: seq - 1 per window)."""

    tokens: int = 0
    nll: float = 0.0  # sum of -log p(next token)
    kl: float = 0.0  # sum of KL(reference || this)
    agree: int = 0  # positions whose argmax matches the reference's

    def add(self, ref_logp: np.ndarray, logits: np.ndarray, ids: np.ndarray) -> None:
        """Score one window: `ref_logp` the reference's log-probabilities [seq, vocab], `logits`
        this model's [seq, vocab], `ids` the window's tokens [seq]."""
        logp = log_softmax(logits)[:-1]
        ref = ref_logp[:-1]
        targets = np.asarray(ids)[1:]
        if logp.shape != ref.shape:
            raise ParityError(f"logits shape {list(logits.shape)} differs from the reference's "
                              f"{list(ref_logp.shape)} (vocabulary or window length changed)")
        self.tokens += len(targets)
        self.nll += float(-logp[np.arange(len(targets)), targets].sum())
        self.kl += float((np.exp(ref) * (ref - logp)).sum())
        self.agree += int((logp.argmax(-1) == ref.argmax(-1)).sum())

    def summary(self) -> dict[str, Any]:
        n = max(self.tokens, 1)
        return {"tokens": self.tokens, "perplexity": float(np.exp(self.nll / n)), "kl_mean": self.kl / n,
                "top1_agreement": self.agree / n}


def first_divergence(a: list[int], b: list[int]) -> Optional[int]:
    """The index of the first token where two continuations differ (a shorter one differs where
    it ends), or None when they are the same."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


@dataclass
class Continuations:
    """Greedy continuations of the same prompts by the reference and by one artifact."""

    reference: list[list[int]] = field(default_factory=list)
    candidate: list[list[int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        firsts = [first_divergence(r, c) for r, c in zip(self.reference, self.candidate)]
        same = sum(f is None for f in firsts)
        return {"prompts": len(firsts), "identical": same, "first_divergence": firsts}


def check(summary: dict[str, Any], ref_ppl: float, verify: Any, accuracy: Any, where: str) -> dict[str, Any]:
    """The recipe's tolerances on one artifact x runtime; a miss is a ParityError naming the
    artifact, the runtime and the measure. Returns the perplexity increase it measured."""
    increase = summary["perplexity"] / ref_ppl - 1.0
    if verify.top1_agreement_min is not None and summary["top1_agreement"] < verify.top1_agreement_min:
        raise ParityError(f"verify: {where}: next-token top-1 agreement {summary['top1_agreement']:.4f} is below "
                          f"verify.top1_agreement_min {verify.top1_agreement_min} ({summary['tokens']} tokens)")
    if verify.kl_max is not None and summary["kl_mean"] > verify.kl_max:
        raise ParityError(f"verify: {where}: mean KL divergence {summary['kl_mean']:.4f} per token is above "
                          f"verify.kl_max {verify.kl_max} ({summary['tokens']} tokens)")
    if accuracy.max_increase is not None and increase > accuracy.max_increase:
        raise ParityError(f"accuracy: {where}: perplexity {summary['perplexity']:.3f} is {increase:+.1%} over the "
                          f"reference's {ref_ppl:.3f}; accuracy.max_increase is {accuracy.max_increase:+.1%}")
    return {"perplexity_increase": increase}


def against_stored(runner: Any, windows: np.ndarray, ref_argmax: np.ndarray) -> dict[str, Any]:
    """`edgekit verify` of a language-model artifact later or elsewhere, without the source
    model: its perplexity on the stored windows, and next-token agreement with the reference's
    stored argmax (KL needs the reference's whole distribution, which is not kept)."""
    return score_stored([runner.logits(ids) for ids in windows], windows, ref_argmax)


def score_stored(logits: list[Any], windows: np.ndarray, ref_argmax: np.ndarray) -> dict[str, Any]:
    """Perplexity of `logits` (one [tokens, vocab] per window) on the windows' next tokens, and
    their agreement with the reference's argmax. Windows may be cut to a prefix: the model is
    causal, so the reference's argmax over a prefix is the stored one's prefix."""
    tokens, nll, agree = 0, 0.0, 0
    for lg, ids, ref in zip(logits, windows, ref_argmax):
        ids = np.asarray(ids)
        logp = log_softmax(np.asarray(lg).reshape(len(ids), -1))[:-1]
        targets = ids[1:]
        tokens += len(targets)
        nll += float(-logp[np.arange(len(targets)), targets].sum())
        agree += int((logp.argmax(-1) == np.asarray(ref)[: len(ids)][:-1]).sum())
    n = max(tokens, 1)
    return {"samples": int(len(windows)), "tokens": tokens, "perplexity": float(np.exp(nll / n)),
            "top1_agreement": agree / n, "cosine_mean": None, "cosine_worst": None}


def check_stored(res: dict[str, Any], manifest: dict[str, Any], where: str) -> None:
    """The recipe's agreement and perplexity tolerances on a re-verification."""
    verify, accuracy = manifest["recipe"].get("verify") or {}, manifest["recipe"].get("accuracy") or {}
    low = verify.get("top1_agreement_min")
    if low is not None and res["top1_agreement"] < low:
        raise ParityError(f"verify: {where}: next-token top-1 agreement {res['top1_agreement']:.4f} with the stored "
                          f"reference is below verify.top1_agreement_min {low}")
    ref_ppl = manifest["metrics"]["reference"]["value"]
    high = accuracy.get("max_increase")
    if high is not None and res["perplexity"] / ref_ppl - 1.0 > high:
        raise ParityError(f"verify: {where}: perplexity {res['perplexity']:.3f} is "
                          f"{res['perplexity'] / ref_ppl - 1.0:+.1%} over the reference's {ref_ppl:.3f}; "
                          f"accuracy.max_increase is {high:+.1%}")
