"""A partition's store: a dict whose writes are tracked for the changelog and undone with a
failed record."""

from __future__ import annotations

import msgspec

from driftway.io.state import Store


def test_changes_become_changelog_records_once_and_deletes_tombstones() -> None:
    store = Store(partition=2)
    store.begin()
    store["a"] = {"n": 1}
    store["a"] = {"n": 2}  # the last value of a key is what the changelog needs
    store["b"] = [1, 2]
    store.commit_record()
    changes = store.take_changes()
    assert {k: msgspec.json.decode(v) for k, v in changes.items() if v is not None} == {
        "a": {"n": 2}, "b": [1, 2]}
    assert store.take_changes() == {}  # taken once
    store.begin()
    del store["b"]
    assert store.pop("a") == {"n": 2}
    store.commit_record()
    assert store.take_changes() == {"a": None, "b": None} and len(store) == 0


def test_a_failed_record_leaves_neither_state_nor_changelog_behind() -> None:
    store = Store(partition=0, data={"kept": 1})
    store.begin()
    store["kept"] = 2
    store["new"] = 3
    del store["kept"]
    store.undo()
    assert dict(store) == {"kept": 1} and not store.has_changes
    store.begin()
    store["kept"] = 5
    store.commit_record()
    store.begin()
    store["kept"] = 6
    store.undo()  # undoing a later record keeps the earlier record's change pending
    assert store["kept"] == 5 and store.take_changes() == {"kept": b"5"}
