"""Which dead letters a selection picks, and what a replay does with each (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftway.logic.dead_letters import (
    NOT_REPLAYABLE,
    Selection,
    counts,
    mark_key,
    parse_time,
    payload,
    payload_text,
    plan,
    select,
)
from driftway.schemas.events import DeadLetter

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RAW, LABELS, TRAINING = "driftway.raw", "driftway.labels", "driftway.training"


def letter(offset: int, *, topic: str = RAW, processor: str = "scoring", partition: int = 0,
           value: bytes = b'{"ok": true}', error: str = "invalid RawEvent: x",
           minutes: int = 0, key: str | None = "u1") -> DeadLetter:
    d = DeadLetter.of(processor, topic, partition, offset, key, value, error)
    return d.model_copy(update={"ts": T0 + timedelta(minutes=minutes)})


def passes_if_ok(_key: bytes | None, value: bytes | None) -> None:
    if value != b'{"ok": true}':
        raise ValueError(f"still bad: {value!r}")


CHECKS = {RAW: passes_if_ok, LABELS: passes_if_ok}


def test_the_mark_key_is_the_source_coordinates_whoever_dead_lettered_it() -> None:
    a = letter(5, partition=2)
    b = letter(5, partition=2, processor="sink")
    assert mark_key(a) == mark_key(b) == "driftway.raw/2/5"
    assert mark_key(letter(5, partition=1)) != mark_key(a)


def test_the_payload_comes_back_as_it_was_and_as_text_only_when_it_is_text() -> None:
    assert payload(letter(0, value=b"\x00\xff")) == b"\x00\xff"
    assert payload_text(letter(0, value=b"\x00\xff")) is None
    assert payload_text(letter(0, value="naïve".encode())) == "naïve"
    assert payload(letter(0, value=b"")) == b"" and payload_text(letter(0, value=b"")) == ""


@pytest.mark.parametrize(("selection", "picked"), [
    (Selection(), [0, 1, 2, 3]),
    (Selection(processors=frozenset({"feedback"})), [2]),
    (Selection(processors=frozenset({"feedback", "learner"})), [2, 3]),
    (Selection(topics=frozenset({RAW})), [0, 1]),
    (Selection(error="STRING TOO"), [1]),
    (Selection(since=T0 + timedelta(minutes=10)), [1, 2, 3]),  # from, inclusive
    (Selection(until=T0 + timedelta(minutes=10)), [0]),  # before, exclusive
    (Selection(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=25)), [1, 2]),
    (Selection(replayed=True), [1]),
    (Selection(replayed=False), [0, 2, 3]),
    (Selection(topics=frozenset({RAW}), replayed=False), [0]),
])
def test_a_selection_picks_by_processor_topic_error_time_and_replay(
        selection: Selection, picked: list[int]) -> None:
    letters = [
        letter(3, topic=TRAINING, processor="learner", minutes=30),
        letter(2, topic=LABELS, processor="feedback", minutes=20),
        letter(1, error="invalid RawEvent: data.city: String too long", minutes=10),
        letter(0, minutes=0),
    ]
    replayed = {mark_key(letters[2])}
    assert [d.source_offset for d in select(letters, replayed, selection)] == picked


def test_a_replay_sends_what_passes_now_once_and_reports_the_rest() -> None:
    sent_before = letter(1)
    steps = plan([letter(0), sent_before, letter(2, value=b"{broken"),
                  letter(3, topic=TRAINING, processor="learner"),
                  letter(4, topic=LABELS, processor="feedback")],
                 replayed={mark_key(sent_before)}, checks=CHECKS)
    assert [(s.letter.source_offset, s.outcome) for s in steps] == [
        (0, "send"), (1, "replayed"), (2, "fails"), (3, "not replayable"), (4, "send")]
    assert steps[2].reason == "ValueError: still bad: b'{broken'"
    assert steps[3].reason == NOT_REPLAYABLE
    assert counts(steps) == {"send": 2, "replayed": 1, "fails": 1, "not replayable": 1}


def test_a_record_dead_lettered_twice_is_sent_once() -> None:
    steps = plan([letter(7), letter(7, processor="other")], replayed=set(), checks=CHECKS)
    assert [s.outcome for s in steps] == ["send", "replayed"]


def test_the_check_gets_the_original_key_and_value_and_any_exception_is_a_failure() -> None:
    seen = []

    def check(key: bytes | None, value: bytes | None) -> None:
        seen.append((key, value))
        raise OverflowError("int too large to convert to float")

    steps = plan([letter(0, key="u9"), letter(1, key=None)], set(), {RAW: check})
    assert seen == [(b"u9", b'{"ok": true}'), (None, b'{"ok": true}')]
    assert {s.reason for s in steps} == {"OverflowError: int too large to convert to float"}


def test_times_are_iso_in_utc_unless_zoned_or_a_time_ago() -> None:
    now = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    assert parse_time("2026-12-01T10:00:00") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse_time("2026-12-01T10:00:00+02:00") == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert parse_time("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_time("90s", now) == now - timedelta(seconds=90)
    assert parse_time("15m", now) == now - timedelta(minutes=15)
    assert parse_time("1.5h", now) == now - timedelta(minutes=90)
    assert parse_time("7d", now) == now - timedelta(days=7)
    assert parse_time("1w", now) == now - timedelta(days=7)
    with pytest.raises(ValueError, match="neither an ISO time nor a time ago"):
        parse_time("yesterday")
