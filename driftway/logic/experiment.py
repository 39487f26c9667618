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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from driftway.logic.models import coerce_label, is_classifier, make_model

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


def replay(model: Any, xs: Sequence[dict[str, float]], labels: Sequence[Any],
           order: Sequence[tuple[str, int]]) -> np.ndarray:
    """Each example's prediction by ``model``: P(positive) for binary classifiers, the
    predicted value for regressors, in example order (the model learns as it goes, from
    `labels` as it learns them: see ``coerced``)."""
    classifier = is_classifier(model)
    out = [0.0] * len(xs)  # a list: item assignment into numpy costs more than the model
    predict = model.predict_proba_one if classifier else model.predict_one
    learn = model.learn_one
    for action, i in order:
        if action == SERVE:
            answer = predict(xs[i])
            out[i] = answer.get(True, 0.0) if classifier else answer or 0.0
        else:
            learn(xs[i], labels[i])
    return np.array(out)


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


#: Each metric, and whether a higher value is better.
HIGHER_IS_BETTER = {"accuracy": True, "roc_auc": True, "log_loss": False, "mae": False,
                    "rmse": False}


@dataclass(frozen=True)
class History:
    """The stored joined examples of one model line, in training order: features, labels as the
    line learned them, the champion's served answer (P(positive) for a binary classifier, the
    value for a regressor) and (served, labelled) times in seconds, each None when unknown."""

    xs: list[dict[str, float]]
    ys: list[Any]
    served: list[float | None]
    times: list[tuple[float, float] | None]
    offsets: list[int] = field(default_factory=list)
    #: Whether the champion's answer was right (classifiers; None when it gave none): its
    #: accuracy is what it served, even where its P(positive) sat on the threshold.
    served_right: list[bool | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.xs)


@dataclass(frozen=True)
class Outcome:
    """What one contender scored over a history."""

    candidate: str
    metrics: dict[str, float]
    examples: int
    seconds: float = 0.0

    @property
    def examples_per_s(self) -> float | None:
        return self.examples / self.seconds if self.seconds > 0 else None


def metrics_of(predicted: np.ndarray, truth: Sequence[Any], classifier: bool) -> dict[str, float]:
    """The metrics of one contender's predictions; a metric that is undefined (an AUC over one
    class) is left out."""
    figures = (classification_metrics(predicted, np.array(truth, dtype=bool)) if classifier
               else regression_metrics(predicted, np.array(truth, dtype=float)))
    return {k: v for k, v in figures.items() if np.isfinite(v)}


def check_binary(model: Any, ys: Sequence[Any]) -> bool:
    """Whether `model` is a classifier; ValueError if it is one and the labels, as it learns
    them, are not booleans (experiments score binary classifiers and regressors)."""
    classifier = is_classifier(model)
    if classifier:
        kinds = {coerce_label(model, y) for y in set(ys)}
        if not kinds <= {True, False}:
            shown = ", ".join(sorted(map(repr, kinds))[:5])
            raise ValueError(f"experiments score binary classifiers and regressors; labels "
                             f"here are {shown}: not booleans")
    return classifier


def run_candidate(spec: str, history: History, label_delay: int = 0) -> Outcome:
    """Replay `history` through a fresh model of `spec`, prequentially in served/labelled time
    order (`label_delay` examples without times), and score its predictions."""
    model = make_model(spec)
    classifier = check_binary(model, history.ys)
    order = replay_order(history.times, label_delay)
    start = time.perf_counter()
    labels = coerced(model, history.ys)
    predicted = replay(model, history.xs, labels, order)
    seconds = time.perf_counter() - start
    return Outcome(spec, metrics_of(predicted, labels, classifier), len(history), seconds)


def served_outcome(history: History, classifier: bool) -> Outcome | None:
    """The champion's own figures over the examples it answered with a score (None if none)."""
    kept = [i for i, s in enumerate(history.served) if s is not None]
    if not kept:
        return None
    predicted = np.array([history.served[i] for i in kept], dtype=float)
    figures = metrics_of(predicted, [history.ys[i] for i in kept], classifier)
    if classifier and history.served_right:
        figures["accuracy"] = float(np.mean([bool(history.served_right[i]) for i in kept]))
    return Outcome("served", figures, len(kept))


def coerced(model: Any, ys: Sequence[Any]) -> list[Any]:
    """`ys` as `model` learns them: one coercion per distinct value, not per example."""
    seen: dict[Any, Any] = {}
    return [seen[y] if y in seen else seen.setdefault(y, coerce_label(model, y)) for y in ys]


def best(outcomes: Sequence[Outcome], metric: str) -> Outcome | None:
    """The outcome with the best `metric` (None when none has it).

    >>> a, b = Outcome("a", {"log_loss": 0.4}, 10), Outcome("b", {"log_loss": 0.3}, 10)
    >>> best([a, b], "log_loss").candidate, best([a, b], "accuracy")
    ('b', None)
    """
    scored = [o for o in outcomes if metric in o.metrics]
    if not scored:
        return None
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    return max(scored, key=lambda o: sign * o.metrics[metric])


def trained(spec: str, history: History) -> Any:
    """A fresh model of `spec` that learned every example of `history` in training order: the
    learner's own rule (driftway.logic.replay), so the state is what its lineage says."""
    model = make_model(spec)
    for x, y in zip(history.xs, coerced(model, history.ys), strict=True):
        model.learn_one(x, y)
    return model
