"""Prequential replay of stored examples through one candidate, with the label delay they had.

Each stored example was served at ``predicted_at`` and its label arrived at ``labelled_at``.
The replay merges the two orders: the candidate predicts an example having learned exactly
the labels that arrived strictly before that example was served. Examples without those
times fall back to the order given, with a label delay of ``label_delay`` examples.

>>> order = replay_order([(0, 5), (1, 2), (3, 4)])
>>> order
[('serve', 0), ('serve', 1), ('learn', 1), ('serve', 2), ('learn', 2), ('learn', 0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from driftway.logic.models import coerce_label, is_classifier

SERVE, LEARN = "serve", "learn"


def replay_order(times: Sequence[tuple[float, float] | None],
                 label_delay: int = 0) -> list[tuple[str, int]]:
    """The (action, example index) sequence: serves and label arrivals in time order; at equal
    times the serve comes first, so no label is seen before its event is served. Without times
    for every example, the stored order with ``label_delay`` examples between serve and label."""
    if times and all(t is not None for t in times):
        steps = [(t[0], 0, i) for i, t in enumerate(times) if t is not None]
        steps += [(max(t[1], t[0]), 1, i) for i, t in enumerate(times) if t is not None]
        return [(LEARN if kind else SERVE, i) for _, kind, i in sorted(steps)]
    order: list[tuple[str, int]] = []
    for i in range(len(times)):
        order.append((SERVE, i))
        if i >= label_delay:
            order.append((LEARN, i - label_delay))
    order += [(LEARN, i) for i in range(max(0, len(times) - label_delay), len(times))]
    return order


def replay(model: Any, xs: Sequence[dict[str, float]], ys: Sequence[Any],
           order: Sequence[tuple[str, int]]) -> np.ndarray:
    """Each example's prediction by ``model``: P(positive) for binary classifiers, the
    predicted value for regressors, in example order (the model learns as it goes)."""
    classifier = is_classifier(model)
    coerced: dict[Any, Any] = {}  # one coercion per distinct label value, not per example
    labels = [coerced[y] if y in coerced else coerced.setdefault(y, coerce_label(model, y))
              for y in ys]
    out = np.zeros(len(xs))
    for action, i in order:
        if action == SERVE:
            if classifier:
                out[i] = model.predict_proba_one(xs[i]).get(True, 0.0)
            else:
                out[i] = model.predict_one(xs[i]) or 0.0
        else:
            model.learn_one(xs[i], labels[i])
    return out


def classification_metrics(proba: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Accuracy (threshold 0.5), log loss and ROC AUC of P(positive) against boolean truth."""
    p = np.clip(proba, 1e-15, 1 - 1e-15)
    y = truth.astype(bool)
    log_loss = float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))
    positives, negatives = int(y.sum()), int((~y).sum())
    ranks = rankdata(proba)
    auc = (float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))
           if positives and negatives else float("nan"))
    return {"accuracy": float(np.mean((proba >= 0.5) == y)), "log_loss": log_loss,
            "roc_auc": auc}


def regression_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE and RMSE."""
    error = predicted - truth
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2)))}
