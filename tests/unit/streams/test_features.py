"""The features processor's decoding of raw records, without Kafka."""

from __future__ import annotations

import pytest

from driftway.schemas.events import failure_reason
from driftway.streams.features import decode_raw


def test_decode_errors_have_readable_reasons() -> None:
    with pytest.raises(ValueError, match="null value"):
        decode_raw(None)
    try:
        decode_raw(b'{"event_id": "e", "ts": 1, "data": {}}')
    except Exception as exc:  # noqa: BLE001
        assert failure_reason(exc) == "invalid RawEvent: entity_id: Field required"
    else:
        pytest.fail("missing entity_id was accepted")
