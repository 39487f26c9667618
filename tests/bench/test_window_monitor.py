"""The former window monitor (bench/window_monitor.py), bench/drift.py's "before" column: it
still finds what it found, within its budget, so the comparison stays meaningful."""

from __future__ import annotations

import random

import pytest

from bench.window_monitor import DataDriftMonitor
from driftway.logic.drift import Alarm
from tests.unit.logic.test_sequential import NAMES, feature_rows

WINDOW, EVERY = 1000, 250


def run(monitor: DataDriftMonitor, rows: list[dict[str, float]]) -> list[Alarm]:
    return [alarm for row in rows for alarm in monitor.update(row)]


def test_alpha_is_the_budget_split_over_checks_and_features() -> None:
    monitor = DataDriftMonitor(check_every=250, false_alarms_per_100k=2.0)
    assert monitor.alpha == pytest.approx(2.0 / 100_000 * 250)
    monitor.update({**{name: 0.0 for name in NAMES}, "city=a": 1.0})
    monitor.update({**{name: 0.0 for name in NAMES}, "city=b": 1.0})
    assert monitor.alpha == pytest.approx(2.0 / 100_000 * 250 / 21)  # 20 numeric + one group
    checks_per_100k = 100_000 / 250
    assert checks_per_100k * 21 * monitor.alpha == pytest.approx(2.0)


@pytest.mark.parametrize("test", ["ks", "psi"])
def test_mean_shift_in_one_of_20_features_alarms_once(test: str) -> None:
    change = 4001
    monitor = DataDriftMonitor(window=WINDOW, check_every=EVERY, numeric_test=test)
    alarms = run(monitor, feature_rows(9000, seed=1, shift_at=change))
    assert len(alarms) == 1, alarms  # one change, one alert: 5,000 updates follow it
    alarm = alarms[0]
    assert (alarm.kind, alarm.detector, alarm.feature) == ("data", test, "f7")
    assert change <= alarm.index <= change + WINDOW + EVERY  # stated bound; observed: 4250
    assert abs(alarm.change_point - change) <= 100  # asked: within a window; observed: 4001
    assert alarm.change_point <= alarm.index
    assert alarm.statistic > alarm.threshold
    assert alarm.p_value is not None and alarm.p_value < monitor.alpha


def test_categorical_change_alarms_once_on_the_field() -> None:
    change = 4001
    monitor = DataDriftMonitor(window=WINDOW, check_every=EVERY)
    alarms = run(monitor, feature_rows(9000, seed=2, cities_change_at=change))
    assert [(a.detector, a.feature) for a in alarms] == [("chi2", "city")]
    assert change <= alarms[0].index <= change + WINDOW + EVERY  # observed: 4500
    assert abs(alarms[0].change_point - change) <= WINDOW  # observed: 4002
    assert alarms[0].statistic > alarms[0].threshold


def test_category_unseen_in_the_reference_alarms() -> None:
    rng = random.Random(3)
    monitor = DataDriftMonitor(window=200, check_every=50)
    rows = [{f"city={rng.choice('ab' if i < 1000 else 'abz')}": 1.0} for i in range(2000)]
    alarms = run(monitor, rows)
    assert [(a.detector, a.feature) for a in alarms] == [("chi2", "city")]
    assert 1000 < alarms[0].index <= 1000 + 200 + 50


def test_stationary_stream_of_50k_events_gives_no_alarm() -> None:
    monitor = DataDriftMonitor()  # default window, checks and budget: expected <= 0.5 alarms
    assert run(monitor, feature_rows(50_000, seed=0)) == []
    assert monitor.n == 50_000


def test_prediction_drift_on_scores_and_predicted_classes() -> None:
    rng = random.Random(4)
    monitor = DataDriftMonitor(kind="prediction", window=300, check_every=100)
    alarms = []
    for i in range(1, 4001):
        score = rng.betavariate(2, 5) if i < 2001 else rng.betavariate(5, 2)
        alarms += monitor.update({"score": score, f"prediction={score > 0.5}": 1.0})
    assert sorted((a.kind, a.feature) for a in alarms) == [
        ("prediction", "prediction"), ("prediction", "score")]
    assert all(2001 <= a.index <= 2001 + 300 + 100 for a in alarms)


def test_the_module_example_runs() -> None:
    import doctest

    import bench.window_monitor

    assert doctest.testmod(bench.window_monitor).failed == 0
