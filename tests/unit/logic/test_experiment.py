import random

import numpy as np
from river import metrics

from driftway.logic.experiment import (
    LEARN,
    SERVE,
    classification_metrics,
    regression_metrics,
    replay,
    replay_order,
)
from driftway.logic.models import make_model


def test_no_label_is_learned_before_its_event_is_served():
    rng = random.Random(1)
    times = []
    for i in range(200):
        served = float(i)
        times.append((served, served + rng.choice([0.0, 1.0, 7.5, 30.0])))
    order = replay_order(times)
    served: set[int] = set()
    for action, i in order:
        if action == SERVE:
            learned_before = {j for a, j in order[:order.index((SERVE, i))] if a == LEARN}
            assert all(times[j][1] < times[i][0] for j in learned_before)
            served.add(i)
        else:
            assert i in served
    assert sorted(order) == sorted([(SERVE, i) for i in range(200)] +
                                   [(LEARN, i) for i in range(200)])


def test_without_times_the_stored_order_with_a_delay_of_examples():
    order = replay_order([None] * 4, label_delay=2)
    assert order == [(SERVE, 0), (SERVE, 1), (SERVE, 2), (LEARN, 0), (SERVE, 3), (LEARN, 1),
                     (LEARN, 2), (LEARN, 3)]


def test_classification_metrics_match_river():
    rng = np.random.default_rng(3)
    proba = rng.random(500)
    truth = rng.random(500) < proba
    ours = classification_metrics(proba, truth)
    acc, loss, auc = metrics.Accuracy(), metrics.LogLoss(), metrics.ROCAUC(n_thresholds=1000)
    for p, y in zip(proba, truth, strict=True):
        acc.update(bool(y), bool(p >= 0.5))
        loss.update(bool(y), {True: float(p), False: 1 - float(p)})
        auc.update(bool(y), {True: float(p), False: 1 - float(p)})
    assert abs(ours["accuracy"] - acc.get()) < 1e-9
    assert abs(ours["log_loss"] - loss.get()) < 1e-9
    assert abs(ours["roc_auc"] - auc.get()) < 0.01


def test_regression_metrics_match_river():
    rng = np.random.default_rng(4)
    predicted, truth = rng.normal(size=300), rng.normal(size=300)
    mae, rmse = metrics.MAE(), metrics.RMSE()
    for p, y in zip(predicted, truth, strict=True):
        mae.update(float(y), float(p))
        rmse.update(float(y), float(p))
    ours = regression_metrics(predicted, truth)
    assert abs(ours["mae"] - mae.get()) < 1e-9 and abs(ours["rmse"] - rmse.get()) < 1e-9


def test_replay_learns_a_separable_stream():
    xs = [{"x": float(i % 2)} for i in range(400)]
    ys = [i % 2 == 1 for i in range(400)]
    proba = replay(make_model("logistic_regression"), xs, ys, replay_order([None] * 400, 5))
    figures = classification_metrics(proba[100:], np.array(ys[100:]))
    assert figures["accuracy"] == 1.0 and figures["roc_auc"] == 1.0
