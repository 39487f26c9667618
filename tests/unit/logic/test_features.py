from __future__ import annotations

import math

import pytest

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
    assert v2.features["entity.seconds_since_last"] == pytest.approx(3.5)
    assert state == {"n": 2, "last_ts": 13.5}
    assert v2.feature_set == "fs1"


def test_out_of_order_event_does_not_move_last_seen_back() -> None:
    late = RawEvent(event_id="3", entity_id="u", ts=5_000, data={})
    vector, state = featurize(late, {"n": 2, "last_ts": 13.5}, received_at=0.0)
    assert vector.features["entity.seconds_since_last"] == 0.0
    assert state["last_ts"] == 13.5

