"""`driftway experiment` on the real broker: candidates replayed through a labelled stream's
stored examples, beside the champion's served figures; the same figures from the training topic
as from the table; the results landed in the experiments table; the best deployed as a shadow
that scoring then serves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from driftway.app.query import query
from driftway.app.supervisor import Stack, settings_env
from driftway.sdk import EventProducer
from driftway.settings import ProcessingSettings, Settings
from tests.integration.helpers import linear_event as event
from tests.integration.helpers import linear_truth as truth
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

N = 1500
LABEL_DELAY = 40


def experiment(settings: Settings, *args: str) -> tuple[list[dict[str, Any]], str]:
    """The records `driftway experiment` printed, and what it said on stderr."""
    done = subprocess.run([sys.executable, "-m", "driftway", "experiment", *args,
                           "--format", "json"], env=settings_env(settings),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    records: list[dict[str, Any]] = json.loads(done.stdout)
    return records, done.stderr


def test_candidates_replay_the_stored_history_and_the_best_becomes_a_shadow(
    stack_settings: Settings,
) -> None:
    settings = stack_settings.model_copy(update={"processing": ProcessingSettings(
        publish_every=500, feedback_window_seconds=60.0)})
    with Stack(settings) as stack:
        stack.wait_until_serving()
        sdk = EventProducer(settings)
        for i in range(N + LABEL_DELAY):
            if i < N:
                sdk.send_event(event(i))
            if i >= LABEL_DELAY:
                sdk.send_label({"event_id": f"x-{i - LABEL_DELAY}",
                                "label": truth(i - LABEL_DELAY)})
            if i % 100 == 0:
                time.sleep(0.05)  # paced: labels join events already served
        sdk.flush()
        wait_for(lambda: query(settings, "SELECT count() FROM training").rows[0][0],
                 lambda n: n == N, 120, f"the {N} joined examples in the training table")

        table, _ = experiment(settings, "--model", "logistic_regression",
                              "--model", "hoeffding_tree", "--jobs", "2", "--shadow-best")
        assert [r["role"] for r in table] == ["served", "candidate", "candidate"]
        assert {r["source"] for r in table} == {"table"}
        assert all(r["examples"] == N for r in table)
        assert all({"accuracy", "log_loss", "roc_auc"} <= set(r["metrics"]) for r in table)
        served = table[0]["metrics"]["accuracy"]
        # What the champion served over these events is what the predictions and labels say.
        stored = query(settings, "SELECT avg(p.prediction = l.label) FROM predictions AS p "
                                 "INNER JOIN labels AS l USING event_id").rows[0][0]
        assert served == pytest.approx(stored, abs=1e-9)
        best = [r for r in table if r["best"]]
        assert len(best) == 1 and best[0]["shadow"]
        assert best[0]["metrics"]["log_loss"] == min(r["metrics"]["log_loss"]
                                                     for r in table[1:])

        # The training topic holds the same examples in the same order: the same figures.
        topic, _ = experiment(settings, "--model", "logistic_regression", "--source", "topic")
        assert topic[1]["source"] == "topic" and topic[1]["examples"] == N
        assert topic[1]["metrics"] == table[1]["metrics"]

        # The same best again: the same state, deployed already; nothing is written twice.
        shadowed = (f"SELECT count() FROM deployments WHERE action = 'shadow' "
                    f"AND version = '{best[0]['shadow']}'")
        wait_for(lambda: query(settings, shadowed).rows[0][0], lambda n: n == 1, 60,
                 "the shadow's deployment row")
        again, said = experiment(settings, "--model", "logistic_regression",
                                 "--model", "hoeffding_tree", "--shadow-best")
        assert [r["shadow"] for r in again if r["best"]] == [best[0]["shadow"]]
        assert "is deployed already (shadow): nothing changed" in said

        # The three runs land in the experiments table, one row per contender.
        wait_for(lambda: query(settings, "SELECT experiment, candidate, role, accuracy "
                                         "FROM experiments ORDER BY ts").rows,
                 lambda rows: len(rows) == 8, 60, "the experiments' rows")
        assert query(settings, shadowed).rows[0][0] == 1

        # The best is a published version, deployed as a shadow, and scoring serves it.
        shadow = best[0]["shadow"]
        meta = wait_for(lambda: query(settings, f"SELECT reason, training_end, examples_seen "
                                                f"FROM model_versions WHERE version = "
                                                f"'{shadow}'").rows,
                        lambda rows: len(rows) == 1, 60, "the shadow's version row")
        assert meta[0][2] == N and "experiment" in meta[0][0]
        sdk.send_event(event(N))
        sdk.flush()
        for i in range(N + 1, N + 400):  # until scoring has applied the new deployment
            scored = query(settings, "SELECT count() FROM predictions "
                                     f"WHERE has(mapKeys(shadow_scores), '{shadow}')").rows[0][0]
            if scored:
                break
            sdk.send_event(event(i))
            sdk.flush()
            time.sleep(0.05)
        assert scored, f"no prediction scored by the shadow {shadow[:12]}"
        stack.check()
