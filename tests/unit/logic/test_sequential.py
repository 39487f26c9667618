"""Sequential data drift: driftway.logic.sequential (CUSUMs per numeric feature, a GLR per
category mix), its delays, what its alarms say, and its false-alarm budget."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from driftway.logic import sequential
from driftway.logic.category_mix import mix_threshold
from driftway.logic.drift import Alarm
from driftway.logic.sequential import (
    SequentialDriftMonitor,
    log_run_length,
    threshold,
)

NAMES = [f"f{j}" for j in range(20)]
CITIES = ["a", "b", "c", "d"]


def feature_rows(n: int, seed: int, shift_at: int | None = None, shifted: str = "f7",
                 cities_change_at: int | None = None) -> list[dict[str, float]]:
    """20 standard Gaussian features and a one-hot city; positions are 1-based like Alarm.index.

    From update ``shift_at`` on, ``shifted`` has mean 1 (+1 sd); from ``cities_change_at`` on,
    the cities go from (0.4, 0.3, 0.2, 0.1) to uniform.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NAMES)))
    if shift_at is not None:
        x[shift_at - 1:, NAMES.index(shifted)] += 1.0
    before = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    after = rng.choice(4, size=n)
    city = before if cities_change_at is None else np.where(
        np.arange(1, n + 1) >= cities_change_at, after, before)
    rows = []
    for values, c in zip(x.tolist(), city.tolist(), strict=True):
        row = dict(zip(NAMES, values, strict=True))
        row[f"city={CITIES[c]}"] = 1.0
        rows.append(row)
    return rows


def seq_run(rows: list[dict[str, float]], **kwargs: float) -> list[Alarm]:
    monitor = SequentialDriftMonitor(**kwargs)  # type: ignore[arg-type]
    return [alarm for row in rows for alarm in monitor.update(row)]


def test_a_1_sd_shift_is_found_within_50_events_and_the_alarm_says_what_moved() -> None:
    delays = []
    for seed in range(1, 5):
        alarms = seq_run(feature_rows(5_000, seed, shift_at=3_001))
        assert [(a.feature, a.direction) for a in alarms] == [("f7", "up")]
        a = alarms[0]
        delays.append(a.index - 3_001)
        assert abs(a.change_point - 3_001) <= 30
        assert a.before is not None and a.after is not None
        assert abs(a.before[0]) < 0.1 and 0.9 < a.before[1] < 1.1  # the reference: N(0, 1)
        assert a.after[0] > 0.5  # after the change point: around +1
        assert len(a.moved) == 3 and "f7" not in [f for f, _ in a.moved]
        assert [m for _, m in a.moved] == sorted((m for _, m in a.moved), reverse=True)
    assert sum(delays) / len(delays) <= 50, delays


def test_a_small_shift_is_caught_by_its_own_lower_threshold() -> None:
    # +0.25 sd: that CUSUM stops at h = h0 + 2 ln(0.25^2 / 2), 6.9 nats below the base
    # threshold h0 (it gets most of the budget), times 1 + h / (KL n) for a reference of n
    # values (between 1,000 and 2,000 here); the alarm reports the threshold it crossed.
    rows = feature_rows(6_000, 8)
    for row in rows[2_000:]:
        row["f3"] += 0.25
    monitor = SequentialDriftMonitor()
    alarms = [a for row in rows for a in monitor.update(row)]
    assert [(a.feature, a.direction) for a in alarms] == [("f3", "up")]
    kl = 0.25 ** 2 / 2
    h = monitor.threshold + 2 * math.log(kl)
    assert h * (1 + h / (kl * 2_000)) <= alarms[0].threshold <= h * (1 + h / (kl * 1_000))
    assert alarms[0].threshold < monitor.threshold - 1
    assert alarms[0].statistic > alarms[0].threshold and 2_000 < alarms[0].index < 3_500
    assert 1_600 < alarms[0].change_point < 2_400


def test_small_shifts_are_found_as_fast_as_the_reallocated_budget_allows() -> None:
    # One feature of 20, +0.5 sd after a 6,000-event reference (it grew): the 0.5 sd CUSUM's
    # threshold is 4.2 nats below the base one, so the mean delay is about 120 events.
    delays = []
    for seed in range(20, 26):
        rows = feature_rows(7_000, seed)
        for row in rows[6_000:]:
            row["f11"] += 0.5
        alarms = [a for a in seq_run(rows) if a.index > 6_000]
        assert [a.feature for a in alarms] == ["f11"], alarms
        delays.append(alarms[0].index - 6_001)
    assert 40 < sum(delays) / len(delays) < 170, delays


def test_a_variance_change_is_found() -> None:
    rows = feature_rows(6_000, 5)
    for row in rows[3_000:]:
        row["f2"] *= 2.0
    alarms = seq_run(rows)
    assert [(a.feature, a.direction) for a in alarms] == [("f2", "sd up")]
    assert 3_000 < alarms[0].index < 3_200
    assert alarms[0].after is not None and alarms[0].after[1] > 1.5


def test_a_category_mix_shift_is_found_and_the_category_named() -> None:
    alarms = seq_run(feature_rows(8_000, 6, cities_change_at=3_001))
    assert [(a.feature, a.detector) for a in alarms] == [("city", "glr")]
    a = alarms[0]
    # (0.4, 0.3, 0.2, 0.1) -> uniform: d (0.1 -> 0.25) moved most, in its own sd
    assert a.direction == "d gained"
    assert a.shares_before is not None and a.shares_after is not None
    assert abs(a.shares_before["a"] - 0.4) < 0.05 and a.shares_after["d"] > 0.15
    assert 3_001 < a.index < 3_400 and abs(a.change_point - 3_001) < 150


def city_rows(n: int, seed: int, shares: list[float], after: list[float] | None = None,
              at: int = 0) -> list[dict[str, float]]:
    """A one-hot ``city`` with these shares (``after`` them from row ``at`` on)."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(len(shares), size=n, p=shares)
    if after is not None:
        codes[at:] = rng.choice(len(after), size=n - at, p=after)
    return [{f"city={CITIES[c]}": 1.0} for c in codes.tolist()]


def test_a_small_move_between_two_categories_is_found_by_the_mix_glr() -> None:
    # 0.05 of the share moves from b to c (KL 0.010 nats per event): the GLR weighs all four
    # categories at once; one Bernoulli CUSUM per category would see at most 0.007.
    delays = []
    for seed in range(6):
        rows = city_rows(14_000, seed, [0.3, 0.3, 0.2, 0.2], [0.3, 0.25, 0.25, 0.2], 10_000)
        alarms = seq_run(rows)
        assert [a.feature for a in alarms] == ["city"], alarms
        assert alarms[0].direction in ("b lost", "c gained")
        delays.append(alarms[0].index - 10_001)
    assert sum(delays) / len(delays) < 2_000, delays


def test_a_new_category_is_found_at_once() -> None:
    rows = city_rows(3_000, 3, [0.5, 0.5])
    rng = random.Random(3)
    for row in rows[2_000:]:
        if rng.random() < 0.2:
            row.clear()
            row["city=z"] = 1.0
    alarms = seq_run(rows)
    assert [(a.feature, a.direction) for a in alarms] == [("city", "other gained")]
    assert 2_000 < alarms[0].index < 2_100


def stationary_rows(n: int, seed: int) -> list[dict[str, float]]:
    """Gaussian, heavy-tailed, skewed, discrete and binary features and a one-hot city."""
    rng = np.random.default_rng(seed)
    cols = {"g0": rng.normal(size=n), "g1": rng.normal(size=n), "t3": rng.standard_t(3, n),
            "exp": rng.exponential(size=n), "pois": rng.poisson(2.0, n).astype(float),
            "coin": (rng.random(n) < 0.3).astype(float)}
    city = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    names = list(cols)
    rows = []
    for values, c in zip(np.column_stack([cols[k] for k in names]).tolist(), city.tolist(),
                         strict=True):
        row = dict(zip(names, values, strict=True))
        row[f"city={CITIES[c]}"] = 1.0
        rows.append(row)
    return rows


def test_the_false_alarm_rate_holds_its_budget_on_mixed_stationary_features() -> None:
    # A budget of 20 per 100,000 events over all 7 features: 200,000 stationary events expect
    # at most 40 false alarms; calibrated at a budget of 1, the thresholds are not too high at
    # 20 either (some alarms come).
    alarms = [a for seed in (11, 12) for a in seq_run(stationary_rows(100_000, seed),
                                                      false_alarms_per_100k=20.0)]
    assert 5 <= len(alarms) <= 40, len(alarms)
    assert {a.feature for a in alarms} >= {"coin"}  # the binary feature is watched too
    assert seq_run(stationary_rows(50_000, 13)) == []  # the default budget, 1 per 100,000


def test_the_mix_glr_holds_its_budget_on_stationary_categories() -> None:
    # Three category mixes (2-way, 4-way, 8-way with rare ones), 100,000 events, a budget of 30
    # over the three: at most 30 false alarms expected.
    rng = np.random.default_rng(5)
    mixes = {"two": [0.7, 0.3], "four": [0.4, 0.3, 0.2, 0.1],
             "eight": [0.3, 0.2, 0.15, 0.15, 0.1, 0.05, 0.03, 0.02]}
    codes = {name: rng.choice(len(p), size=100_000, p=p).tolist() for name, p in mixes.items()}
    monitor = SequentialDriftMonitor(false_alarms_per_100k=30.0)
    alarms = []
    for t in range(100_000):
        alarms += monitor.update({f"{name}={codes[name][t]}": 1.0 for name in mixes})
    assert 3 <= len(alarms) <= 30, len(alarms)


def test_a_trending_feature_is_not_watched_a_binary_one_is() -> None:
    rng = random.Random(4)
    monitor = SequentialDriftMonitor(reference=200)
    alarms = []
    for i in range(5_000):
        alarms += monitor.update({"clock": 1.7e9 + i * 0.25 + rng.random(),
                                  "x": rng.gauss(0, 1), "flag": float(rng.random() < 0.3)})
    assert alarms == [] and monitor.unwatched == ["clock"]


def test_a_binary_feature_whose_share_moves_is_found() -> None:
    rng = random.Random(9)
    rows = [{"flag": float(rng.random() < (0.3 if i < 3_000 else 0.45))} for i in range(5_000)]
    alarms = seq_run(rows)
    assert [(a.feature, a.direction) for a in alarms] == [("flag", "up")]
    assert 3_000 < alarms[0].index < 3_400


def test_the_budget_is_split_evenly_over_the_watched_features() -> None:
    monitor = SequentialDriftMonitor()
    monitor.update({"a": 1.0, "b": 2.0, "city=x": 1.0, "city=y": 0.0})
    # two numeric features and one one-hot group: three shares of the budget
    assert monitor.log_run_length == pytest.approx(math.log(3 * 100_000))
    assert monitor.threshold == pytest.approx(threshold(3, 1.0))
    # a mix of more categories has more degrees of freedom: a higher threshold; a longer
    # window, fewer independent tests: a lower one
    windows = np.array([1, 8, 64, 512])
    eight, two = (mix_threshold(log_run_length(3, 1.0), k, 16, windows) for k in (8, 2))
    assert np.all(eight > two + 3)
    assert np.all(np.diff(two) < 0) and two[0] - two[-1] == pytest.approx(math.log(512), 0.2)


def test_features_run_together_alarm_as_they_do_one_by_one(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    # Numeric features whose values came together run as one matrix; one by one, the same.
    rows = feature_rows(6_000, 3, shift_at=3_001)
    for row in rows[4_000:]:
        row["f5"] *= 2.0

    def alarms() -> list[tuple[int, str | None, str | None, int, float]]:
        return [(a.index, a.feature, a.direction, a.change_point, a.statistic)
                for a in seq_run(rows)]

    together = alarms()
    monkeypatch.setattr(sequential, "_run_together", lambda group, log_arl: None)
    assert alarms() == together and [f for _, f, *_ in together] == ["f7", "f5"]


def test_missing_values_are_skipped_and_a_late_feature_gets_its_own_reference() -> None:
    rng = random.Random(5)
    monitor = SequentialDriftMonitor(reference=500)
    alarms = []
    for i in range(1, 8001):
        row: dict[str, float | None] = {"always": rng.gauss(0, 1)}
        if i % 2:
            row["odd"] = rng.gauss(5, 1)  # absent on even updates: not zeros
        else:
            row["odd"] = None if i % 4 else float("nan")
        if i > 3000:
            row["late"] = rng.gauss(0 if i < 6000 else 2, 1)
        alarms += monitor.update(row)  # type: ignore[arg-type]
    assert [a.feature for a in alarms] == ["late"]
    assert 6000 <= alarms[0].index <= 6000 + 50
    assert abs(alarms[0].change_point - 6000) <= 20


@pytest.mark.filterwarnings("error")  # 0/0 in a share's sd was a RuntimeWarning and a NaN
def test_a_category_the_reference_never_had_gives_finite_shifts() -> None:
    rng = np.random.default_rng(11)
    rows = [{"x": float(v) + (1.0 if i >= 2_000 else 0.0), "city=a": 1.0}
            for i, v in enumerate(rng.normal(size=3_000))]
    for row in rows[2_500:]:  # a second city comes after the alarm on x: its own alarm
        if rng.random() < 0.5:
            del row["city=a"]
            row["city=b"] = 1.0
    alarms = seq_run(rows)
    assert [a.feature for a in alarms][:1] == ["x"] and 2_000 < alarms[0].index < 2_100
    # the city had not moved yet: a small finite shift (it was NaN, and NaN ranks anywhere)
    assert [name for name, _ in alarms[0].moved] == ["city"] and alarms[0].moved[0][1] < 0.1
    city = [a for a in alarms if a.feature == "city"]
    assert city and city[0].direction == "b gained" and city[0].index > 2_500
