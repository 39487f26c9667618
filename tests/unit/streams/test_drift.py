"""The drift processor's per-model monitors, without Kafka."""

from __future__ import annotations

import random
from collections import deque
from datetime import UTC, datetime

from driftway.app.demo import DemoPlan, loan_applications
from driftway.io.runtime import Incoming
from driftway.logic.offline import OfflineLoop, raw_stream
from driftway.schemas.events import DriftEvent, Output, Served
from driftway.settings import DriftSettings, Settings
from driftway.streams.drift import DriftWatch, ModelMonitors


def served(i: int, a: float, champion: str, p_true: float) -> Served:
    return Served(event_id=f"e{i}", entity_id="u", ts=datetime.now(UTC), model="m",
                  champion=champion, features={"a": a, "entity.events": float(i)},
                  outputs={champion: Output(prediction=p_true > 0.5,
                                            score=max(p_true, 1 - p_true),
                                            proba={"true": p_true, "false": 1 - p_true})},
                  predicted_at=0.0)


def test_a_shifted_feature_alarms_once_and_a_counter_never() -> None:
    rng = random.Random(1)
    monitors = ModelMonitors(DriftSettings())
    alarms = []
    for i in range(12_000):
        a = rng.gauss(0, 1) + (1.0 if i >= 6_000 else 0.0)
        for alarm in monitors.update(served(i, a, "v1", rng.random()), 0, i):
            alarms.append((alarm.kind, alarm.feature, alarm.index))
    assert [(k, f) for k, f, _ in alarms] == [("data", "a")]
    # Detected soon after the shift (positions count from 1, i = 6,000 is the 6,001st).
    assert 6_001 < alarms[0][2] <= 6_001 + 100
    where = monitors.where(monitors.n)
    assert where == (0, 11_999, "e11999")


def test_prediction_drift_compares_one_champion_only() -> None:
    rng = random.Random(2)
    monitors = ModelMonitors(DriftSettings())
    kinds = []
    for i in range(12_000):
        # Every 900 events a new (auto-updated) champion with somewhat different scores:
        # learning, not drift.
        champion = f"v{i // 900}"
        p = min(max(rng.gauss(0.3 + 0.02 * (i // 900), 0.1), 0.0), 1.0)
        kinds += [a.kind for a in monitors.update(served(i, rng.gauss(0, 1), champion, p), 0, i)]
    assert kinds == []
    # One champion whose answers change: that is prediction drift.
    for i in range(12_000, 20_000):
        p = min(max(rng.gauss(0.3 if i < 15_000 else 0.7, 0.1), 0.0), 1.0)
        kinds += [a.kind for a in monitors.update(served(i, rng.gauss(0, 1), "fixed", p), 0, i)]
    assert "prediction" in kinds and "data" not in kinds


def test_a_drift_event_says_what_moved_in_a_sentence() -> None:
    settings = Settings(signing_key="k" * 16)
    watch = DriftWatch(settings)
    rng = random.Random(3)
    events = []
    for i in range(6_000):
        a = rng.gauss(10, 2) + (6.0 if i >= 4_000 else 0.0)  # +3 sd
        s = Served(event_id=f"e{i}", entity_id="u", ts=datetime.now(UTC), model="m",
                   champion="v", features={"a": a, "b": rng.gauss(0, 1)}, outputs={},
                   predicted_at=0.0)
        for out in watch.handle(Incoming(topic="t", partition=0, offset=i, key=None,
                                         value=s.to_bytes(), received_at=0.0), None):
            events.append(DriftEvent.from_bytes(out.value))
    assert [(e.kind, e.feature, e.direction) for e in events] == [("data", "a", "up")]
    e = events[0]
    assert e.before_mean is not None and abs(e.before_mean - 10) < 0.3
    assert e.after_mean is not None and e.after_mean > 14
    assert e.change_point is not None and abs(e.change_point - 4_000) <= 10
    assert e.moved_features == ["b"] and len(e.moved_shifts) == 1
    assert e.detail.startswith(f"a rose from mean {e.before_mean:.3g} (sd "), e.detail
    assert f"since event e{e.change_point}" in e.detail and "also moved: b" in e.detail


def test_the_demos_pre_change_half_raises_no_drift_alarm() -> None:
    # The demo's events, features and served answers (the champion learning its first concept
    # with the demo's label delay), through the drift processor's monitors.
    plan = DemoPlan()
    settings = Settings(signing_key="k" * 16)
    loop = OfflineLoop(settings, label_delay=plan.label_delay)
    monitors = ModelMonitors(settings.drift.for_model(loop.learner.model_name))
    waiting: deque = deque()
    events = raw_stream(loan_applications(DemoPlan(events=plan.change_at)))
    alarms = []
    for i, (x, y) in enumerate(events):
        champion, outputs = loop.answer(x)
        served = Served(event_id=f"e{i}", entity_id="u", ts=datetime.now(UTC), model="m",
                        champion=champion, features=x, outputs=outputs, predicted_at=0.0)
        alarms += [(i, a.kind, a.feature) for a in monitors.update(served, 0, i)]
        waiting.append((i, x, y, champion, outputs))
        if len(waiting) > plan.label_delay:
            j, *rest = waiting.popleft()
            loop.learn(f"e{j}", *rest)
    assert monitors.n == plan.change_at
    assert alarms == []
