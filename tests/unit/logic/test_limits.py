"""Input limits: each exceeded limit is a refusal naming the value, the limit and the setting."""

from __future__ import annotations

import json

import pytest

from driftway.io.runtime import Incoming
from driftway.io.state import Store
from driftway.logic.limits import LimitExceeded, decode_checked
from driftway.schemas.events import Label, RawEvent, failure_reason
from driftway.settings import LimitsSettings, Settings
from driftway.streams.feedback import Feedback
from driftway.streams.scoring import featurize_raw

LIMITS = LimitsSettings()


def event(**fields: object) -> bytes:
    return json.dumps({"event_id": "e", "entity_id": "u", "ts": 1, "data": {}, **fields}).encode()


@pytest.mark.parametrize(("model", "value", "reason"), [
    (RawEvent, event(data={"note": "x" * 5000}),
     "invalid RawEvent: data.note is 5000 characters, over limits.max_string_length 1024 "
     "(DRIFTWAY_LIMITS__MAX_STRING_LENGTH)"),
    (RawEvent, event(data={"n" * 1025: 1}),
     "invalid RawEvent: the name of data field 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn'… is 1025 "
     "characters, over limits.max_string_length 1024 (DRIFTWAY_LIMITS__MAX_STRING_LENGTH)"),
    (RawEvent, event(data={f"f{i}": i for i in range(1001)}),
     "invalid RawEvent: data has 1001 fields, over limits.max_fields 1000 "
     "(DRIFTWAY_LIMITS__MAX_FIELDS)"),
    (RawEvent, event(event_id="i" * 257),
     "invalid RawEvent: event_id is 257 characters, over limits.max_id_length 256 "
     "(DRIFTWAY_LIMITS__MAX_ID_LENGTH)"),
    (RawEvent, event(entity_id="é" * 257),  # characters, not bytes
     "invalid RawEvent: entity_id is 257 characters, over limits.max_id_length 256 "
     "(DRIFTWAY_LIMITS__MAX_ID_LENGTH)"),
    (RawEvent, b" " * 1_000_001,
     "invalid RawEvent: the record is 1000001 bytes, over limits.max_record_bytes 1000000 "
     "(DRIFTWAY_LIMITS__MAX_RECORD_BYTES)"),
    (Label, json.dumps({"event_id": "e", "label": "y" * 1025}).encode(),
     "invalid Label: label is 1025 characters, over limits.max_string_length 1024 "
     "(DRIFTWAY_LIMITS__MAX_STRING_LENGTH)"),
    (Label, json.dumps({"event_id": "i" * 300, "label": True}).encode(),
     "invalid Label: event_id is 300 characters, over limits.max_id_length 256 "
     "(DRIFTWAY_LIMITS__MAX_ID_LENGTH)"),
])
def test_each_limit_names_itself_and_its_setting(model: type[RawEvent] | type[Label],
                                                 value: bytes, reason: str) -> None:
    with pytest.raises(LimitExceeded) as refused:
        decode_checked(model, value, LIMITS)
    assert failure_reason(refused.value) == reason


def test_limits_are_settings_and_the_processors_use_them() -> None:
    note = event(data={"note": "x" * 5000})
    store = Store(0)
    with pytest.raises(LimitExceeded):
        featurize_raw(note, store, 1.0, LIMITS)
    assert store.data == {}  # refused: its entity's state is not touched
    wider = Settings(limits=LimitsSettings(max_string_length=5000, max_id_length=300))
    vector = featurize_raw(note, store, 1.0, wider.limits)
    assert vector.event_id == "e" and vector.features["entity.events"] == 1.0

    label = json.dumps({"event_id": "i" * 300, "label": True}).encode()
    with pytest.raises(LimitExceeded, match="max_id_length"):
        Feedback(Settings()).handle(Incoming("labels", 0, 0, None, label, 1.0), Store(0))
    assert Feedback(wider).handle(Incoming("labels", 0, 0, None, label, 1.0), Store(0)) == []


def test_at_the_limits_is_within_them() -> None:
    at = event(event_id="i" * 256, entity_id="😀" * 256,
               data={**{f"f{i}": i for i in range(999)}, "k" * 1024: "v" * 1024})
    assert decode_checked(RawEvent, at, LIMITS).event_id == "i" * 256
    tight = LimitsSettings(max_record_bytes=len(at))
    assert decode_checked(RawEvent, at, tight)
    with pytest.raises(LimitExceeded, match="max_record_bytes"):
        decode_checked(RawEvent, at, LimitsSettings(max_record_bytes=len(at) - 1))
