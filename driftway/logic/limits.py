"""Input limits: how large a raw event or a label may be where it enters Driftway.

The scoring processor (raw events) and the feedback processor (labels) decode what they read
with `decode_checked`, against ``settings.limits`` (driftway.settings.LimitsSettings). A record
over a limit is refused like any other invalid record — one dead letter — with a reason that
names the value, the limit and the setting that raises it. The size is checked before the record
is parsed, so a huge record costs a length, not a parse.

>>> from driftway.settings import LimitsSettings
>>> note = b'{"event_id": "e", "entity_id": "u", "ts": 1, "data": {"note": "%s"}}' % (b"x" * 5000)
>>> decode_checked(RawEvent, note, LimitsSettings())
Traceback (most recent call last):
...
driftway.logic.limits.LimitExceeded: invalid RawEvent: data.note is 5000 characters, over \
limits.max_string_length 1024 (DRIFTWAY_LIMITS__MAX_STRING_LENGTH)
>>> decode_checked(RawEvent, note, LimitsSettings(max_string_length=5000)).data["note"][:3]
'xxx'
"""

from __future__ import annotations

from typing import TypeVar

from driftway.schemas.events import InvalidRecord, Label, RawEvent
from driftway.settings import LimitsSettings

R = TypeVar("R", RawEvent, Label)


class LimitExceeded(InvalidRecord):
    """A raw event or label over one of the input limits (its message says which, and how to
    raise it)."""

    def __init__(self, kind: str, what: str, setting: str, limit: int) -> None:
        ValueError.__init__(self, f"invalid {kind}: {what}, over limits.{setting} {limit} "
                                  f"(DRIFTWAY_LIMITS__{setting.upper()})")


def decode_checked(model: type[R], value: bytes | None, limits: LimitsSettings) -> R:
    """The raw event or label in `value`, within the limits (raises LimitExceeded, pydantic's
    ValidationError for what the schema refuses, or ValueError for a null value)."""
    if value is None:
        raise ValueError("empty message (null value)")
    size = len(value)
    check_size(model.__name__, size, limits)
    record = model.model_validate_json(value)
    check_limits(record, limits, size)
    return record


def check_size(kind: str, size: int, limits: LimitsSettings) -> None:
    """Refuse a record of `size` bytes over limits.max_record_bytes."""
    if size > limits.max_record_bytes:
        raise LimitExceeded(kind, f"the record is {size} bytes", "max_record_bytes",
                            limits.max_record_bytes)


def check_limits(record: RawEvent | Label, limits: LimitsSettings,
                 size: int | None = None) -> None:
    """Refuse a valid raw event or label that is over a limit: ids, data's field count, field
    names and text values, a label's text. `size`, the bytes it was decoded from, spares
    looking at each text of a record too short to hold one over the limit (a character takes
    a byte at least)."""
    kind = type(record).__name__
    longest_id, longest = limits.max_id_length, limits.max_string_length
    if len(record.event_id) > longest_id:
        raise LimitExceeded(kind, f"event_id is {len(record.event_id)} characters",
                            "max_id_length", longest_id)
    if isinstance(record, Label):
        label = record.label
        if isinstance(label, str) and len(label) > longest:
            raise LimitExceeded(kind, f"label is {len(label)} characters",
                                "max_string_length", longest)
        return
    if len(record.entity_id) > longest_id:
        raise LimitExceeded(kind, f"entity_id is {len(record.entity_id)} characters",
                            "max_id_length", longest_id)
    data = record.data
    if len(data) > limits.max_fields:
        raise LimitExceeded(kind, f"data has {len(data)} fields", "max_fields",
                            limits.max_fields)
    if size is not None and size <= longest:  # most records: no text can be too long
        return
    for name, value in data.items():  # the hot path: one pass, two length checks a field
        if len(name) > longest:
            raise LimitExceeded(kind, f"the name of data field {name[:32]!r}… is {len(name)} "
                                "characters", "max_string_length", longest)
        if isinstance(value, str) and len(value) > longest:
            raise LimitExceeded(kind, f"data.{name} is {len(value)} characters",
                                "max_string_length", longest)
