from __future__ import annotations

import math

from driftway.logic.features import event_features, featurize
from driftway.schemas.events import RawEvent


def test_numbers_stay_numeric_and_strings_become_one_hot() -> None:
    assert event_features({"a": 2, "b": 1.5, "flag": False, "city": "Oslo", "gone": None,
                           "bad": math.nan}) == {"a": 2.0, "b": 1.5, "flag": 0.0,
                                                 "city=Oslo": 1.0}


def test_entity_aggregates_follow_the_entity() -> None:
    e1 = RawEvent(event_id="1", entity_id="u", ts=10_000, data={"x": 1})
    e2 = RawEvent(event_id="2", entity_id="u", ts=13_500, data={"x": 2})
    v1, state = featurize(e1, None, received_at=0.0)
    v2, state = featurize(e2, state, received_at=0.0)
    assert v1.features["entity.events"] == 1.0
    assert v2.features["entity.events"] == 2.0
    assert v2.features["entity.seconds_since_last"] == 3.5
    assert state == {"n": 2, "last_us": 13_500_000}
    assert v2.feature_set == "fs1"


def test_out_of_order_event_does_not_move_last_seen_back() -> None:
    late = RawEvent(event_id="3", entity_id="u", ts=5_000, data={})
    vector, state = featurize(late, {"n": 2, "last_ts": 13.5}, received_at=0.0)
    assert vector.features["entity.seconds_since_last"] == 0.0
    assert state["last_us"] == 13_500_000


def test_time_differences_are_exact_and_the_old_state_format_is_read() -> None:
    # Epoch seconds near 1.7e9 as floats round to ~0.2 us; microsecond integers do not.
    base = 1_767_225_600_000  # ms
    for step_ms in (1, 7, 333):
        a = RawEvent(event_id="a", entity_id="u", ts=base, data={})
        b = RawEvent(event_id="b", entity_id="u", ts=base + step_ms, data={})
        _, state = featurize(a, None, received_at=0.0)
        vector, _ = featurize(b, state, received_at=0.0)
        assert vector.features["entity.seconds_since_last"] == step_ms / 1000
    old = {"n": 1, "last_ts": base / 1000}  # written before, in float seconds
    vector, state = featurize(RawEvent(event_id="c", entity_id="u", ts=base + 250, data={}), old,
                              received_at=0.0)
    assert vector.features["entity.seconds_since_last"] == 0.25
    assert state == {"n": 2, "last_us": (base + 250) * 1000}

