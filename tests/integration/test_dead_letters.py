"""`driftway dead-letters` on the real broker: what was refused is replayed once it passes, and
gets exactly one prediction; a second replay, a dry run and a crashed replay send nothing twice.

Counts are taken on the topics with read_committed readers, where nothing deduplicates: a record
written twice is counted twice; ClickHouse is checked to show each prediction once.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import KafkaException, Producer

from driftway.app.cli import cli
from driftway.app.dead_letters import replay
from driftway.app.query import query
from driftway.app.supervisor import Stack, settings_env
from driftway.io.dead_letters import Replayer
from driftway.io.kafka import ensure_topics, produce
from driftway.logic.dead_letters import Selection, mark_key, payload
from driftway.schemas.events import DeadLetter, Prediction, ReplayMark
from driftway.settings import LimitsSettings, Settings
from tests.integration.helpers import read_topic, wait_for

pytestmark = pytest.mark.integration


def invoke(settings: Settings, *args: str) -> Result:
    """`driftway <args>` in this process, with exactly these settings."""
    return CliRunner(env=settings_env(settings)).invoke(cli, list(args), catch_exceptions=False)


def as_json(settings: Settings, *args: str, exit_code: int = 0) -> Any:
    done = invoke(settings, *args, "--format", "json")
    assert done.exit_code == exit_code, done.output
    return json.loads(done.stdout)


def event(i: int, city: str) -> bytes:
    return json.dumps({"event_id": f"e{i}", "entity_id": f"u{i % 5}",
                       "ts": 1_767_225_600_000 + i, "data": {"amount": i, "city": city}}).encode()


def predictions_by_event(settings: Settings, at_least: int) -> Counter[str]:
    return Counter(Prediction.from_bytes(v).event_id
                   for _, _, v in read_topic(settings, "predictions", at_least))


def prediction_rows(settings: Settings) -> int:
    # `query` reads with FINAL (and refuses SETTINGS): this says each is visible once in
    # ClickHouse; that none was written twice is counted on the topic.
    return int(query(settings, "SELECT count() FROM predictions").rows[0][0])


def test_events_refused_by_a_too_small_limit_get_one_prediction_each_once_it_is_raised(
    stack_settings: Settings,
) -> None:
    raised = stack_settings
    small = raised.model_copy(update={"limits": LimitsSettings(max_string_length=8)})
    short = [event(i, "Oslo") for i in range(0, 40)]
    long = [event(i, "Kristiansand-sentrum") for i in range(40, 70)]  # 20 characters
    broken = [b'{"event_id": "b1", "ts": 1, "data": {}}', b"{not json"]  # fail for good
    with Stack(small) as stack:
        stack.wait_until_serving()
        producer = Producer({"bootstrap.servers": small.kafka.bootstrap_servers,
                             "partitioner": "murmur2_random"})
        for value in [*short, *long, *broken]:
            producer.produce(small.topic("raw"), key=b"u", value=value)
        assert producer.flush(30) == 0
        letters = [DeadLetter.model_validate_json(v) for _, _, v in
                   read_topic(small, "dead-letters", len(long) + len(broken))]
        assert len(letters) == len(long) + len(broken)
        assert predictions_by_event(small, len(short)) == Counter(
            {f"e{i}": 1 for i in range(0, 40)})
        stack.check()

    # The stack is stopped: the topic alone says what was refused, and what a replay would do.
    listed = as_json(raised, "dead-letters", "list", "--topic", "raw")
    assert len(listed) == len(letters) and not any(d["replayed_at"] for d in listed)
    too_long = [d for d in listed if payload_is(d, letters, long)]
    assert len(too_long) == len(long)
    unchanged = as_json(small, "dead-letters", "replay", "--dry-run", exit_code=1)
    assert unchanged["counts"]["send"] == 0  # the limit is what it was: all still fail
    assert all("max_string_length 8" in s["reason"] for s in unchanged["steps"]
               if payload_is(s, letters, long))
    dry = as_json(raised, "dead-letters", "replay", "--dry-run", exit_code=1)
    assert dry["dry_run"] and dry["counts"] == {"send": len(long), "replayed": 0,
                                                "fails": len(broken), "not replayable": 0}
    assert len(read_topic(raised, "raw", len(short) + len(long) + len(broken))) == \
        len(short) + len(long) + len(broken)  # a dry run sends nothing

    done = as_json(raised, "dead-letters", "replay", exit_code=1)  # two still fail
    assert done["counts"] == {"send": len(long), "replayed": 0, "fails": len(broken),
                              "not replayable": 0}
    failing = [s for s in done["steps"] if s["outcome"] == "fails"]
    assert len(failing) == len(broken) and all(s["reason"] for s in failing)
    again = as_json(raised, "dead-letters", "replay", exit_code=1)
    assert again["counts"] == {"send": 0, "replayed": len(long), "fails": len(broken),
                               "not replayable": 0}

    with Stack(raised) as stack:
        stack.wait_until_serving()
        n = len(short) + len(long)
        served = predictions_by_event(raised, n)
        assert served == Counter({f"e{i}": 1 for i in range(0, 70)})  # one each, none twice
        wait_for(lambda: prediction_rows(raised), lambda c: c >= n, 120, "prediction rows")
        assert prediction_rows(raised) == n
        assert len(read_topic(raised, "dead-letters")) == len(letters)  # none refused again
        stack.check()
    marked = as_json(raised, "dead-letters", "list", "--replayed")
    assert len(marked) == len(long)
    assert len(as_json(raised, "dead-letters", "list", "--not-replayed")) == len(broken)


def payload_is(summary: dict[str, Any], letters: list[DeadLetter], values: list[bytes]) -> bool:
    """True when the listed dead letter's original record is one of `values`."""
    letter = next(d for d in letters if d.source_offset == summary["source_offset"]
                  and d.source_partition == summary["source_partition"])
    return payload(letter) in values


def test_a_replay_sends_each_passing_dead_letter_once_through_dry_runs_repeats_and_crashes(
    stack_settings: Settings,
) -> None:
    settings = stack_settings
    ensure_topics(settings)
    raw, labels = settings.topic("raw"), settings.topic("labels")
    # Dead letters as the runtime writes them, of records an earlier check refused (offsets
    # past the end of the raw topic: no record there was ever read).
    passing = [DeadLetter.of("scoring", raw, i % 3, 1000 + i, f"u{i}", event(i, "Oslo"),
                             "limits: data.city longer than 2") for i in range(12)]
    still_bad = DeadLetter.of("scoring", raw, 0, 2000, "u", b'{"event_id": "x", "ts": 1}',
                              "invalid RawEvent: entity_id: Field required")
    bad_label = DeadLetter.of("feedback", labels, 1, 7, "e1",
                              b'{"event_id": "e1", "label": "maybe"}', "not binary")
    internal = DeadLetter.of("learner", settings.topic("training"), 0, 3, None, b"{}",
                             "invalid TrainingExample")
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for letter in [*passing, still_bad, bad_label, internal]:
        producer.produce(settings.topic("dead-letters"), key=letter.source_topic,
                         value=letter.to_bytes())
    assert producer.flush(30) == 0

    # A replay that crashed after sending the first one, before its commit…
    crashed = Replayer(settings)
    crashed.producer.begin_transaction()
    produce(crashed.producer, raw, b"u0", payload(passing[0]), None, 0)
    produce(crashed.producer, settings.topic("dead-letter-replays"), mark_key(passing[0]),
            ReplayMark(source_topic=raw, source_partition=0, source_offset=1000,
                       processor="scoring", replayed_at=passing[0].ts).to_bytes(), None)
    crashed.producer.flush(10)  # on the broker, in a transaction never committed

    # (Nothing reads the raw topic to its end now: the open transaction holds readers back.)
    dry = as_json(settings, "dead-letters", "replay", "--dry-run", exit_code=1)
    assert dry["counts"] == {"send": 12, "replayed": 0, "fails": 2, "not replayable": 1}
    assert {s["outcome"] for s in dry["steps"] if s["processor"] == "feedback"} == {"fails"}

    with Stack(settings) as stack:
        stack.wait_until_serving()
        # …is fenced by the next, which sends everything that passes, once.
        steps = replay(settings, Selection(topics=frozenset({raw})))
        assert Counter(s.outcome for s in steps) == {"send": 12, "fails": 1}
        with pytest.raises(KafkaException):  # the crashed one is fenced: it commits nothing
            crashed.producer.commit_transaction(10)
        del crashed
        assert [s.reason for s in steps if s.outcome == "fails"] == [
            "invalid RawEvent: entity_id: Field required"]
        served = predictions_by_event(settings, 12)
        assert served == Counter({f"e{i}": 1 for i in range(12)})
        on_raw = read_topic(settings, "raw", 12)  # the crashed one's record was aborted
        assert sorted(v for _, _, v in on_raw) == sorted(payload(d) for d in passing)
        # each to the partition it came from
        assert {(d.source_partition, payload(d)) for d in passing} == \
            {(p, v) for p, _, v in on_raw}

        again = invoke(settings, "dead-letters", "replay")
        assert again.exit_code == 1  # the two that still fail
        assert "sent 0; replayed before 12; still failing 2; not replayable 1" in again.stdout
        wait_for(lambda: prediction_rows(settings), lambda c: c >= 12, 120, "prediction rows")
        assert prediction_rows(settings) == 12
        assert len(read_topic(settings, "raw")) == 12
        stack.check()

    listed = as_json(settings, "dead-letters", "list")
    assert len(listed) == 15
    assert sum(1 for d in listed if d["replayed_at"]) == 12
    table = invoke(settings, "dead-letters", "list", "--processor", "feedback")
    assert table.exit_code == 0 and "1 dead letters, 0 replayed" in table.stdout
    shown = as_json(settings, "dead-letters", "show", "raw", "0", "2000")
    assert shown["payload_text"] == '{"event_id": "x", "ts": 1}'
    assert "entity_id" in shown["now"] and shown["replayed_at"] is None
    assert as_json(settings, "dead-letters", "show", labels, "1", "7")["now"].startswith(
        "ValueError: label 'maybe' is not binary")
    assert as_json(settings, "dead-letters", "show", "training", "0", "3")["now"] == \
        "not replayable"
    missing = invoke(settings, "dead-letters", "show", "raw", "0", "999999")
    assert missing.exit_code == 1 and "no dead letter" in missing.output
