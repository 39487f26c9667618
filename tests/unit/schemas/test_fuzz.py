"""The published JSON Schemas of raw events and labels say exactly what Driftway accepts.

Thousands of hostile and valid records (tests/hostile.py): a standard validator (jsonschema,
Draft 2020-12, with format checking) on the published schema accepts a record if and only if
the processors' decode (`decode_checked`, default limits) does; every refusal is one exception
of the kinds the runtime makes a dead letter of, with a reason; every accepted raw event goes
through scoring's first step (`featurize_raw`).
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from pydantic import ValidationError

from driftway.io.state import Store
from driftway.logic.limits import LimitExceeded, decode_checked
from driftway.schemas.events import InvalidRecord, Label, RawEvent, failure_reason
from driftway.settings import LimitsSettings
from driftway.streams.scoring import featurize_raw
from tests.hostile import label_records, raw_records, standard_accepts, validator

RAW, LABEL = validator("raw.schema.json"), validator("labels.schema.json")
LIMITS = LimitsSettings()
# Fixed example counts (a few seconds); no example database: nothing written to the checkout.
FUZZ = dict(deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                   HealthCheck.filter_too_much])


def driftway_accepts(model: type[RawEvent] | type[Label], value: bytes) -> RawEvent | Label | None:
    """The record if the processors' decode accepts it; None (with a reason) if it refuses."""
    try:
        return decode_checked(model, value, LIMITS)
    except (ValidationError, InvalidRecord, ValueError) as exc:  # what a dead letter is made of
        reason = failure_reason(exc)
        assert reason and reason.strip()
        if isinstance(exc, LimitExceeded):
            assert "over limits." in reason and "DRIFTWAY_LIMITS__" in reason
        return None


def raw(document: dict[str, object] | str) -> bytes:
    return (document if isinstance(document, str) else json.dumps(document)).encode()


EVENT = {"event_id": "e", "entity_id": "u", "ts": 1767225600000, "data": {"x": 1}}


@pytest.mark.parametrize(("value", "accepted"), [
    (raw(EVENT), True),
    (raw({**EVENT, "ts": "2026-01-01T00:00:00Z"}), True),
    (raw({**EVENT, "ts": "2026-01-01t00:00:00.123456789+05:30"}), True),
    (raw({**EVENT, "ts": "yesterday"}), False),
    (raw({**EVENT, "ts": "2026-01-01T00:00:00"}), False),  # no offset
    (raw({**EVENT, "ts": "2026-01-01"}), False),
    (raw({**EVENT, "ts": "1767225600000"}), False),  # a number written as text
    (raw({**EVENT, "ts": "2026-02-29T00:00:00Z"}), False),
    (raw({**EVENT, "ts": "2024-02-29T00:00:00Z"}), True),
    (raw({**EVENT, "ts": "2026-01-01T00:00:00Z\n"}), False),
    (raw({**EVENT, "ts": -62_135_596_800_000}), True),  # 0001-01-01T00:00:00Z
    (raw({**EVENT, "ts": -62_135_596_800_001}), False),
    (raw({**EVENT, "ts": 253_402_300_799_999}), True),  # 9999-12-31T23:59:59.999Z
    (raw({**EVENT, "ts": 253_402_300_799_999.5}), False),
    (raw('{"event_id": "e", "entity_id": "u", "ts": NaN}'), False),
    (raw('{"event_id": "e", "entity_id": "u", "ts": 1, "data": {"x": Infinity}}'), False),
    (raw({**EVENT, "event_id": "i" * 256}), True),
    (raw({**EVENT, "entity_id": "i" * 257}), False),
    (raw({**EVENT, "data": {"x" * 1024: "y" * 1024}}), True),
    (raw({**EVENT, "data": {"x" * 1025: 1}}), False),
    (raw({**EVENT, "data": {"note": "😀" * 1025}}), False),
    (raw({**EVENT, "data": {f"f{i}": i for i in range(1000)}}), True),
    (raw({**EVENT, "data": {f"f{i}": i for i in range(1001)}}), False),
    (raw({**EVENT, "data": {"x": 10**400}}), False),
    (raw({**EVENT, "data": {"x": int(1.7976931348623157e308) + 1}}), False),
    (raw({**EVENT, "data": {"x": 1.7976931348623157e308, "y": 5e-324, "z": None}}), True),
    (raw({**EVENT, "data": {"x": [1]}}), False),
    (raw({**EVENT, "schema_version": True}), False),
    (raw({**EVENT, "schema_version": 1.0}), True),
    (raw({**EVENT, "extra": 1}), False),
    (b'{"event_id": "e", "entity_id": "\xff", "ts": 1}', False),
    (b'{"event_id": "e", "entity_id": "\\ud800", "ts": 1}', False),
    (b"[" * 20_000 + b"]" * 20_000, False),
])
def test_edges_are_where_the_schema_puts_them(value: bytes, accepted: bool) -> None:
    assert standard_accepts(value, RAW) is accepted
    assert (driftway_accepts(RawEvent, value) is not None) is accepted


@pytest.mark.parametrize(("value", "accepted"), [
    (b'{"event_id": "e", "label": true}', True),
    (b'{"event_id": "e", "label": 2.5, "ts": "2026-01-01T00:00:00Z"}', True),
    (b'{"event_id": "e", "label": NaN}', False),
    (b'{"event_id": "e", "label": 1e400}', False),
    (raw({"event_id": "e", "label": 10**400}), False),
    (raw({"event_id": "e", "label": "y" * 1024}), True),
    (raw({"event_id": "e", "label": "y" * 1025}), False),
    (raw({"event_id": "i" * 257, "label": True}), False),
    (raw({"event_id": "e", "label": None}), False),
    (raw({"event_id": "e", "label": True, "ts": "yesterday"}), False),
])
def test_label_edges_are_where_the_schema_puts_them(value: bytes, accepted: bool) -> None:
    assert standard_accepts(value, LABEL) is accepted
    assert (driftway_accepts(Label, value) is not None) is accepted


def test_record_size_is_checked_before_parsing() -> None:
    valid = raw({**EVENT, "data": {f"f{i:03d}": "x" * 1000 for i in range(980)}})
    at_limit = valid[:-1] + b" " * (LIMITS.max_record_bytes - len(valid)) + b"}"
    assert len(at_limit) == LIMITS.max_record_bytes
    assert standard_accepts(at_limit, RAW) and driftway_accepts(RawEvent, at_limit)
    over = at_limit[:-1] + b" }"
    assert RAW.is_valid(json.loads(over))  # the schema cannot say: its description does
    with pytest.raises(LimitExceeded, match=r"the record is 1000001 bytes, over "
                       r"limits.max_record_bytes 1000000 \(DRIFTWAY_LIMITS__MAX_RECORD_BYTES\)"):
        decode_checked(RawEvent, over, LIMITS)
    huge = b"[" * 5_000_000  # refused by its length alone: no parse
    began = time.perf_counter()
    with pytest.raises(LimitExceeded):
        decode_checked(RawEvent, huge, LIMITS)
    assert time.perf_counter() - began < 0.01


@settings(max_examples=2_000, **FUZZ)  # type: ignore[arg-type]
@given(raw_records)
@example(raw({**EVENT, "ts": "yesterday"}))
@example(raw({**EVENT, "ts": 1767225600000}))
def test_raw_schema_and_decode_agree(value: bytes) -> None:
    event = driftway_accepts(RawEvent, value)
    assert standard_accepts(value, RAW) is (event is not None), value[:300]
    if event is not None:  # accepted: scoring featurises it
        vector = featurize_raw(value, Store(0), 1.0, LIMITS)
        assert vector.event_id == event.event_id


@settings(max_examples=1_500, **FUZZ)  # type: ignore[arg-type]
@given(label_records)
def test_label_schema_and_decode_agree(value: bytes) -> None:
    label = driftway_accepts(Label, value)
    assert standard_accepts(value, LABEL) is (label is not None), value[:300]
