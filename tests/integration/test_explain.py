"""`driftway explain` on the real broker: predictions served during a labelled stream with
several swaps and a kill -9 of the learner are recomputed bit for bit (DESIGN.md, invariant 7)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from driftway.app.explain import explain_event
from driftway.app.query import query
from driftway.app.supervisor import Stack, settings_env
from driftway.io.keys import with_signing_key
from driftway.sdk import EventProducer
from driftway.settings import ProcessingSettings, Settings
from tests.integration.helpers import linear_event as event
from tests.integration.helpers import linear_truth as truth
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

N = 3000
LABEL_DELAY = 40


def explain_cli(settings: Settings, event_id: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "driftway", "explain", event_id, "--format",
                           "json"], env=settings_env(settings), capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def sample(rows: list[list[Any]], recovered_from: int) -> list[str]:
    """Event ids to explain: the first ones, both sides of every change of serving state, some
    served by the learner's states after its restart, and a spread of live states."""
    picked: list[str] = [r[0] for r in rows[:5]]
    for before, after in zip(rows, rows[1:], strict=False):
        if before[1:3] != after[1:3]:  # (version, state_version) changed: a swap
            picked += [before[0], after[0]]
    later = [r[0] for r in rows if r[4] > recovered_from]
    picked += later[:5] + later[-3:]
    live = [r[0] for r in rows if r[4] > r[3]]
    picked += live[:: max(1, len(live) // 10)]
    picked += [r[0] for r in random.Random(1).sample(rows, 10)]
    return list(dict.fromkeys(picked))


ROWS_SQL = ("SELECT event_id, version, state_version, trained_from, trained_through "
            "FROM predictions ORDER BY predicted_at, event_id")


def test_predictions_served_through_swaps_and_a_learner_restart_are_reproduced_exactly(
    stack_settings: Settings,
) -> None:
    settings = with_signing_key(stack_settings.model_copy(update={"processing": ProcessingSettings(
        publish_every=150, metrics_every=100, feedback_window_seconds=30.0)}))
    with Stack(settings) as stack:
        stack.wait_until_serving()
        sdk = EventProducer(settings)
        sent = 0

        def send(n: int, pause: float = 0.003) -> None:
            """The next `n` events, each event's label LABEL_DELAY events later; paced, so
            that learning keeps up with serving and predictions see its states change."""
            nonlocal sent
            for i in range(sent, sent + n):
                sdk.send_event(event(i))
                if i >= LABEL_DELAY:
                    sdk.send_label({"event_id": f"x-{i - LABEL_DELAY}",
                                    "label": truth(i - LABEL_DELAY)})
                time.sleep(pause)
            sdk.flush()
            sent += n

        def stored() -> list[list[Any]]:
            return wait_for(lambda: query(settings, ROWS_SQL).rows, lambda r: len(r) == sent,
                            120, f"a stored prediction for each of the {sent} events")

        send(N // 2)
        # A crash of the learner mid-stream: it recovers from the registry and replays the
        # training topic from its latest version; scoring serves its last state meanwhile.
        stack.kill("learner")
        send(20)
        before_crash = max(r[4] for r in stored())
        stack.spawn("learner")
        deadline = time.monotonic() + 120
        while max(r[4] for r in stored()) <= before_crash:  # a trickle until it is back
            assert time.monotonic() < deadline, \
                "no prediction served by a state of the restarted learner in 120s"
            send(10, 0.01)
        send(N - sent)
        rows = stored()
        versions = wait_for(
            lambda: query(settings, "SELECT count() FROM model_versions").rows[0][0],
            lambda c: c >= 8, 60, "the versions the learner published")
        states = {tuple(r[1:5]) for r in rows}
        assert len({r[2] for r in rows}) >= 4, (
            f"the stream was served by few states ({len(states)}, of {versions} versions); "
            f"the learner's log ends with:\n{stack.tail('learner')}")

        chosen = sample(rows, before_crash)
        assert len(chosen) >= 20
        reports = {event_id: explain_event(settings, event_id, None) for event_id in chosen}
        failed = {e: (r.verdict, r.to_json()["differences"], r.notes)
                  for e, r in reports.items() if not r.matches}
        assert failed == {}, f"{len(failed)} of {len(chosen)} not reproduced ({versions} versions)"
        assert all(r.lineage and r.lineage[-1].parent is None for r in reports.values())

        # The command itself, on one prediction served by a state that learned since its
        # version (if any), and on an event that was never served.
        live = [e for e, r in reports.items() if r.stored.live]
        code, data = explain_cli(settings, (live or chosen)[-1])
        assert code == 0 and data["verdict"] == "matches exactly", data
        done = subprocess.run([sys.executable, "-m", "driftway", "explain", "never-sent"],
                              env=settings_env(settings), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 1 and "no prediction of event 'never-sent'" in done.stderr
        stack.check()

        # Served by live states, not only by releases as published (the learner streams its
        # lines' states to scoring).
        assert live, "every sampled prediction was served by a release as published"
        assert any(r.learned for r in reports.values())

        # Retention: once the topic no longer holds a state's training records, the training
        # table stands in for them.
        pruned = sorted(live, key=lambda e: reports[e].stored.trained_from)[-5:]
        cut = max(reports[e].stored.trained_from for e in pruned) + 1
        admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
        [deleted] = admin.delete_records([TopicPartition(settings.topic("training"), 0, cut)]
                                         ).values()
        assert deleted.result(30).low_watermark == cut
        again = [explain_event(settings, e, None) for e in pruned]
        assert {(r.verdict, r.source) for r in again} == {("matches exactly", "table")}
        assert [r.learned for r in again] == [reports[e].learned for e in pruned]
