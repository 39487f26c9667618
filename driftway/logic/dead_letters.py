"""Dead letters as an operator handles them: which ones a selection picks, which were replayed,
and what a replay does with each. Pure: reading and writing Kafka is ``driftway.io.dead_letters``'s,
and the re-validation is the entering processor's own (``driftway.app.dead_letters``).

A replay sends a dead letter's original bytes again to its source topic when they pass the
current checks, and marks it by its source coordinates, so a second replay passes it over:

>>> from driftway.schemas.events import DeadLetter
>>> bad = DeadLetter.of("scoring", "driftway.raw", 0, 7, b"u1", b'{"x": 1}', "too long")
>>> worse = DeadLetter.of("scoring", "driftway.raw", 0, 8, b"u1", b"{oops", "not JSON")
>>> def check(key, value):
...     if not value.startswith(b'{"'):
...         raise ValueError("not JSON")
>>> [(s.letter.source_offset, s.outcome, s.reason)
...  for s in plan([bad, worse], replayed=set(), checks={"driftway.raw": check})]
[(7, 'send', ''), (8, 'fails', 'ValueError: not JSON')]
>>> [s.outcome for s in plan([bad], replayed={mark_key(bad)}, checks={"driftway.raw": check})]
['replayed']
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from driftway.schemas.events import DeadLetter, failure_reason

#: What a replay does with one dead letter: sends it, or passes it over because it was sent
#: before, because it still fails the checks, or because its topic is not replayable.
Outcome = Literal["send", "replayed", "fails", "not replayable"]

#: The current checks of one source topic: raises when the record (key, value) would be a dead
#: letter again.
Check = Callable[[bytes | None, bytes | None], object]

NOT_REPLAYABLE = ("only what upstream apps send is replayed: a record sent again to a topic "
                  "Driftway's own processors write would reach that topic's other readers twice")


def mark_key(letter: DeadLetter) -> str:
    """The key of a dead letter's replay mark: its source coordinates.

    >>> mark_key(DeadLetter.of("scoring", "driftway.raw", 2, 41, None, b"", "bad"))
    'driftway.raw/2/41'
    """
    return f"{letter.source_topic}/{letter.source_partition}/{letter.source_offset}"


def payload(letter: DeadLetter) -> bytes:
    """The original bytes of the record that failed."""
    return base64.b64decode(letter.payload_b64)


def payload_text(letter: DeadLetter) -> str | None:
    """The original record as text, when it is UTF-8 (None when it is not).

    >>> payload_text(DeadLetter.of("scoring", "t", 0, 0, None, b'{"a": 1}', "e"))
    '{"a": 1}'
    >>> payload_text(DeadLetter.of("scoring", "t", 0, 0, None, b"\\xff\\xfe", "e")) is None
    True
    """
    try:
        return payload(letter).decode()
    except UnicodeDecodeError:
        return None


_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO time (UTC unless it names its zone), or a time ago: 90s, 15m, 2h, 7d, 1w.

    >>> parse_time("2026-11-28T12:00:00").isoformat()
    '2026-11-28T12:00:00+00:00'
    >>> parse_time("2h", now=datetime(2026, 1, 1, 12, tzinfo=UTC)).isoformat()
    '2026-01-01T10:00:00+00:00'
    """
    ago = _AGO.match(text)
    if ago:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[ago[2]]: float(ago[1])})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO time nor a time ago (90s, 15m, 2h, 7d)"
                         ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on; an empty field selects all.

    >>> letter = DeadLetter.of("scoring", "driftway.raw", 0, 3, None, b"", "String too long")
    >>> Selection(processors=frozenset({"scoring"}), error="too LONG").matches(letter, False)
    True
    >>> Selection(replayed=True).matches(letter, replayed=False)
    False
    """

    processors: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()  # full source topic names
    error: str | None = None  # a substring of the error, in any case
    since: datetime | None = None  # dead letters written from this time on
    until: datetime | None = None  # …and before this one
    replayed: bool | None = None  # only those replayed (True) or not yet (False)

    def matches(self, letter: DeadLetter, replayed: bool) -> bool:
        """True when the selection picks this dead letter."""
        return ((not self.processors or letter.processor in self.processors)
                and (not self.topics or letter.source_topic in self.topics)
                and (self.error is None or self.error.lower() in letter.error.lower())
                and (self.since is None or letter.ts >= self.since)
                and (self.until is None or letter.ts < self.until)
                and (self.replayed is None or replayed == self.replayed))


def select(letters: Iterable[DeadLetter], replayed: Collection[str],
           selection: Selection) -> list[DeadLetter]:
    """The dead letters the selection picks, oldest first (`replayed`: the mark keys)."""
    picked = [d for d in letters if selection.matches(d, mark_key(d) in replayed)]
    return sorted(picked, key=lambda d: (d.ts, d.source_topic, d.source_partition,
                                         d.source_offset))


@dataclass(frozen=True)
class Step:
    """What a replay does with one dead letter, and why when it does not send it."""

    letter: DeadLetter
    outcome: Outcome
    reason: str = ""  # for `fails`: why it fails now; for `not replayable`: why not


def plan(letters: Iterable[DeadLetter], replayed: Collection[str],
         checks: Mapping[str, Check]) -> list[Step]:
    """What a replay does with each dead letter, in order: `checks` are the current checks by
    source topic (full name; a topic without one is not replayable), `replayed` the mark keys
    of what earlier replays sent. One record dead-lettered twice is sent once."""
    steps: list[Step] = []
    sending: set[str] = set()
    for letter in letters:
        key = mark_key(letter)
        check = checks.get(letter.source_topic)
        if check is None:
            steps.append(Step(letter, "not replayable", NOT_REPLAYABLE))
        elif key in replayed or key in sending:
            steps.append(Step(letter, "replayed"))
        else:
            reason = failure(check, letter)
            if reason is None:
                sending.add(key)
                steps.append(Step(letter, "send"))
            else:
                steps.append(Step(letter, "fails", reason))
    return steps


def failure(check: Check, letter: DeadLetter) -> str | None:
    """Why the dead letter's record fails `check` now, in one line (None: it passes)."""
    key = letter.key.encode() if letter.key is not None else None
    try:
        check(key, payload(letter))
    except Exception as exc:  # what the processor would make a dead letter of, whatever it is
        return failure_reason(exc)
    return None


def counts(steps: Iterable[Step]) -> dict[Outcome, int]:
    """How many dead letters each outcome has, in a fixed order.

    >>> counts([])
    {'send': 0, 'replayed': 0, 'fails': 0, 'not replayable': 0}
    """
    out: dict[Outcome, int] = {"send": 0, "replayed": 0, "fails": 0, "not replayable": 0}
    for step in steps:
        out[step.outcome] += 1
    return out
