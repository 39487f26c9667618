"""Changelog-backed state of one input partition: a dict whose changes the runtime writes to a
compacted changelog topic inside the same transaction as the output they explain.

A change made while handling a record that then fails is undone, so the state only ever holds
what served records did. On assignment, a partition's state is read back from its changelog
(committed records only) before the processor sees any of its records.

>>> store = Store(partition=0)
>>> store.begin()
>>> store.set("u1", {"n": 1})
>>> store.commit_record()
>>> store.begin()
>>> store.set("u1", {"n": 2})
>>> store.set("u2", {"n": 1})
>>> store.undo()  # the record failed: its changes go
>>> store.get("u1"), store.get("u2"), sorted(store.take_changes())
({'n': 1}, None, ['u1'])
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import msgspec

from driftway.io.kafka import read_to_end
from driftway.settings import Settings

_MISSING = object()
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class Store(MutableMapping[str, Any]):
    """The state of one partition, with the changes since the last commit; a dict to its user
    (every write through it is tracked)."""

    def __init__(self, partition: int, data: dict[str, Any] | None = None) -> None:
        self.partition = partition
        self.data: dict[str, Any] = data or {}
        self._changed: set[str] = set()
        self._undo: list[tuple[str, Any]] = []
        self._first_changes: list[str] = []  # keys the current record changed first

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self.data:
            raise KeyError(key)
        self.delete(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def has_changes(self) -> bool:
        return bool(self._changed)

    def set(self, key: str, value: Any) -> None:
        self._undo.append((key, self.data.get(key, _MISSING)))
        self.data[key] = value
        self._mark(key)

    def delete(self, key: str) -> None:
        if key in self.data:
            self._undo.append((key, self.data.pop(key)))
            self._mark(key)

    def _mark(self, key: str) -> None:
        if key not in self._changed:
            self._changed.add(key)
            self._first_changes.append(key)

    def begin(self) -> None:
        """A record starts: what it changes can be undone until commit_record()."""
        self._undo.clear()
        self._first_changes.clear()

    def commit_record(self) -> None:
        self._undo.clear()
        self._first_changes.clear()

    def undo(self) -> None:
        """Take back the changes of the record being handled (it failed)."""
        for key, old in reversed(self._undo):
            if old is _MISSING:
                self.data.pop(key, None)
            else:
                self.data[key] = old
        self._changed.difference_update(self._first_changes)
        self._undo.clear()
        self._first_changes.clear()

    def take_changes(self) -> dict[str, bytes | None]:
        """The changelog records of what changed since the last call (None: deleted)."""
        changes = {key: None if key not in self.data else _encode(self.data[key])
                   for key in self._changed}
        self._changed.clear()
        return changes


def restore(settings: Settings, topic: str, partitions: list[int],
            timeout: float = 60.0) -> dict[int, Store]:
    """Partitions' states read back from their changelog, up to its last committed record
    (one consumer reads them all: ``driftway.io.kafka.read_to_end``)."""
    data: dict[int, dict[str, Any]] = {p: {} for p in partitions}
    for msg in read_to_end(settings, topic, partitions, timeout, purpose="restore"):
        key = msg.key().decode()
        if msg.value() is None:
            data[msg.partition()].pop(key, None)
        else:
            data[msg.partition()][key] = _decode(msg.value())
    return {p: Store(p, d) for p, d in data.items()}
