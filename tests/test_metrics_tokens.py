"""Per-token accuracy for dense heads, and how evaluate picks it or refuses a mismatched metric."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.checks import evaluate, metrics
from edgekit.errors import RecipeError


def test_token_top1_is_the_mean_over_every_token():
    logits = np.zeros((2, 3, 4))
    logits[0, [0, 1, 2], [1, 2, 3]] = 1  # predicts 1, 2, 3
    logits[1, [0, 1, 2], [0, 0, 0]] = 1  # predicts 0, 0, 0
    labels = np.array([[1, 2, 0], [0, 3, 3]])
    assert metrics.token_top1(logits, labels) == pytest.approx(3 / 6)
    assert evaluate.score("token_top1", logits, logits, labels) == pytest.approx(0.5)


def test_choose_metric_picks_token_top1_only_for_per_token_labels():
    dense, labels = np.zeros((5, 64, 11)), np.zeros((5, 64), np.int64)
    assert evaluate.choose_metric(None, labels, dense) == "token_top1"
    assert evaluate.choose_metric(None, np.zeros(5, np.int64), np.zeros((5, 1, 10))) == "top1"
    assert evaluate.choose_metric(None, None, dense) == "cosine_fidelity"


def test_mismatched_accuracy_metric_is_one_line_error():
    dense, labels = np.zeros((5, 64, 11)), np.zeros((5, 64), np.int64)
    with pytest.raises(RecipeError) as exc:
        evaluate.choose_metric("top1", labels, dense)
    assert str(exc.value) == ("accuracy.metric: top1 does not fit outputs [5, 64, 11] with labels [5, 64]; use "
                              "token_top1 (token_top1 is for (N, tokens, classes) outputs with one label per token)")
    with pytest.raises(RecipeError, match=r"^accuracy.metric: token_top1 does not fit outputs \[5, 10\] with labels "
                                          r"\[5\]; use top1 "):
        evaluate.choose_metric("token_top1", np.zeros(5, np.int64), np.zeros((5, 10)))
    with pytest.raises(RecipeError, match="^accuracy.metric: token_top1 needs labels in data.evaluation"):
        evaluate.choose_metric("token_top1", None, dense)
