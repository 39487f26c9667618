"""The whole pipeline on the real broker and the embedded ClickHouse engine."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Producer
from rich.console import Console

from driftway.app.query import query
from driftway.app.status import LiveStatus, StatusProbe
from driftway.app.supervisor import Stack, settings_env
from driftway.consumers.subscriber import PredictionSubscriber
from driftway.sdk import EventProducer
from driftway.settings import Settings
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

MALFORMED = [
    b"{not json",
    b'{"event_id": "m1", "ts": 1, "data": {}}',
    b'{"event_id": "m2", "entity_id": "u", "ts": "noon", "data": {}}',
    b'{"event_id": "m3", "entity_id": "u", "ts": 1, "data": {"deep": {"a": 1}}}',
    b'{"event_id": "m4", "entity_id": "u", "ts": 1, "data": {}, "surprise": true}',
    b"[]",
    b"",
]


def counts(settings: Settings) -> tuple[int, int, int]:
    """Rows as stored (no FINAL to collapse a record stored twice)."""
    row = query(settings, "SELECT (SELECT count() FROM predictions), (SELECT count() FROM "
                          "dead_letters), (SELECT count() FROM labels) SETTINGS final = 0").rows[0]
    return int(row[0]), int(row[1]), int(row[2])


def test_valid_events_give_one_prediction_each_and_malformed_ones_one_dead_letter(
    stack_settings: Settings,
) -> None:
    settings = stack_settings
    n, labelled = 300, 120
    with Stack(settings) as stack:
        stack.wait_until_serving()
        received: set[str] = set()
        subscriber = PredictionSubscriber(settings, group_id="it-subscriber",
                                          from_beginning=True, idle_timeout=90)

        def subscribe() -> None:
            for p in subscriber:
                received.add(p.event_id)
                if len(received) >= n:
                    break

        reader = threading.Thread(target=subscribe, daemon=True)
        reader.start()

        producer = EventProducer(settings)
        sent = [producer.send_event({"event_id": f"ev-{i}", "entity_id": f"u{i % 17}",
                                     "ts": 1_767_225_600_000 + i,
                                     "data": {"amount": i * 1.5, "kind": "ab"[i % 2]}}).event_id
                for i in range(n)]
        any_client = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
        for payload in MALFORMED:
            any_client.produce(settings.topic("raw"), key=b"bad", value=payload)
        any_client.flush(10)
        for i in range(labelled):
            producer.send_label({"event_id": f"ev-{i}", "label": i % 3 == 0})
        producer.flush()

        wait_for(lambda: counts(settings), lambda c: c == (n, len(MALFORMED), labelled), 120,
                 "predictions, dead letters and labels in ClickHouse")
        time.sleep(2)  # nothing more arrives later: exactly once, not at least once
        assert counts(settings) == (n, len(MALFORMED), labelled)
        stack.check()

        ids = {r[0] for r in query(settings, "SELECT event_id FROM predictions").rows}
        assert ids == set(sent)
        bad = query(settings, "SELECT countIf(model = '' OR length(version) != 64 OR "
                              "latency_ms < 0 OR explanation = '[]' OR prediction = '') "
                              "FROM predictions").rows[0][0]
        assert bad == 0
        letters = query(settings, "SELECT source_topic, processor, error, base64Encode(payload) "
                                  "FROM dead_letters").rows
        assert {r[0] for r in letters} == {settings.topic("raw")}
        assert {r[1] for r in letters} == {"scoring"}
        assert all(r[2] for r in letters)
        assert sorted(base64.b64decode(r[3]) for r in letters) == sorted(MALFORMED)
        explained = query(settings, "SELECT countIf(JSONLength(explanation) = 3 AND "
                                    "JSONExtractString(explanation, 1, 'feature') != '' AND "
                                    "isFinite(JSONExtractFloat(explanation, 1, 'contribution'))) "
                                    "FROM predictions").rows[0][0]
        assert explained == n  # each explanation is JSON a query opens: top 3 contributions

        reader.join(60)
        assert received == set(sent)

        # `driftway query` from another process goes through the running pipeline's engine.
        env = settings_env(settings)
        done = subprocess.run([sys.executable, "-m", "driftway", "query", "--format", "json",
                               "SELECT count() AS n FROM predictions"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [{"n": n}]
        refused = subprocess.run([sys.executable, "-m", "driftway", "query",
                                  "DROP TABLE predictions"],
                                 env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "readonly" in refused.stderr

        # The live status: lag per processor (all caught up now), throughput, champion.
        probe = StatusProbe(settings)
        try:
            probe.read()
            time.sleep(1.0)
            reading = wait_for(probe.read, lambda r: r.lag.get("scoring") == 0, 30,
                               "lag zero")
        finally:
            probe.close()
        # (predictions are written in transactions: their watermarks count commit markers too)
        assert reading.ends["raw"] == n + len(MALFORMED) and reading.ends["predictions"] >= n
        assert reading.champion is not None and len(reading.champion) == 64
        assert set(reading.lag) == {"scoring", "feedback", "learner", "drift", "sink"}
        out = io.StringIO()
        console = Console(file=out, force_terminal=False, width=500)
        with LiveStatus(settings, console, plain_every=0.3):
            time.sleep(2.0)
        lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("status:")]
        assert lines and "lag: scoring 0, feedback 0" in lines[-1]
        assert reading.champion[:12] in lines[-1]
    assert stack.children == {}
