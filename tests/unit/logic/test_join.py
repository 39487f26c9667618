from __future__ import annotations

from datetime import UTC, datetime

from driftway.logic.join import FeedbackJoin
from driftway.schemas.events import FeedbackOutcome, Label, Output, Served, TrainingExample


def served(event_id: str) -> str:
    return Served(event_id=event_id, entity_id="u", ts=datetime.now(UTC), model="m",
                  champion="v1", features={"x": 1.0},
                  outputs={"v1": Output(prediction=True, score=0.8,
                                        proba={"true": 0.8, "false": 0.2}),
                           "v2": Output(prediction=False, score=0.6)},
                  predicted_at=0.0).to_bytes().decode()


def label(event_id: str, value: bool = True) -> Label:
    return Label(event_id=event_id, label=value)


def outcomes(records) -> list[str]:
    return [r.outcome if isinstance(r, FeedbackOutcome) else "joined" for r in records]


def test_either_side_may_come_first_and_each_pair_joins_once() -> None:
    store: dict = {}
    join = FeedbackJoin(store, window=60, max_pending=100)
    assert join.served("a", served("a"), now=0, partition=0) == []
    [example] = join.label("a", label("a", False), now=1, partition=0)
    assert isinstance(example, TrainingExample)
    assert (example.label, example.served, example.version) == (False, True, "v1")
    assert set(example.outputs) == {"v1", "v2"}  # the shadow's answer travels too
    assert join.label("b", label("b"), now=2, partition=1) == []
    assert outcomes(join.served("b", served("b"), now=3, partition=1)) == ["joined"]
    # Replays after a crash: served again is ignored, a second label is a duplicate.
    assert join.served("a", served("a"), now=4, partition=0) == []
    assert outcomes(join.label("a", label("a"), now=5, partition=0)) == ["duplicate_label"]
    assert {k: (e["s"], e["p"]) for k, e in store.items()} == {"a": ("done", 0), "b": ("done", 1)}


def test_what_waits_too_long_is_recorded_not_dropped() -> None:
    store: dict = {}
    join = FeedbackJoin(store, window=10, max_pending=100)
    join.served("late", served("late"), now=0, partition=0)
    join.label("orphan", label("orphan"), now=1, partition=2)
    join.served("ok", served("ok"), now=5, partition=0)
    expired = join.expire(now=12)
    assert sorted(outcomes(expired)) == ["orphan_label", "unlabelled"]
    unlabelled = next(r for r in expired if r.outcome == "unlabelled")
    assert (unlabelled.model, unlabelled.version, unlabelled.waited_s) == ("m", "v1", 12)
    assert outcomes(join.label("late", label("late"), now=13, partition=0)) == ["late_label"]
    assert outcomes(join.label("ok", label("ok"), now=14, partition=0)) == ["joined"]
    # Markers go after one more window; nothing stays forever.
    join.expire(now=100)
    assert store == {}


def test_state_is_bounded_and_recovers_from_the_store() -> None:
    store: dict = {}
    join = FeedbackJoin(store, window=1000, max_pending=3)
    pushed = []
    for i in range(5):
        pushed += join.served(f"e{i}", served(f"e{i}"), now=i, partition=0)
    # Over the bound the oldest go early, recorded as unlabelled.
    assert [(r.event_id, r.outcome) for r in pushed] == [("e0", "unlabelled"),
                                                        ("e1", "unlabelled")]
    assert sorted(store) == ["e2", "e3", "e4"]
    # A new process over the recovered store (the changelog) picks up where this one stopped.
    recovered = FeedbackJoin(dict(store), window=1000, max_pending=100)
    assert outcomes(recovered.label("e3", label("e3"), now=9, partition=0)) == ["joined"]
    assert sorted(r.event_id for r in recovered.expire(now=1005)) == ["e2", "e4"]
