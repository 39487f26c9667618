"""Scale-out on one machine: three scoring workers share a six-partition topic; one is killed
mid-stream; every event still gets exactly one prediction row."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient

from driftway.app.query import query
from driftway.app.supervisor import Stack
from driftway.io.kafka import client_config
from driftway.schemas.events import Prediction
from driftway.sdk import EventProducer
from driftway.settings import KafkaSettings, Settings
from tests.integration.helpers import read_topic, wait_for

pytestmark = pytest.mark.integration


def scoring_members(settings: Settings) -> tuple[str, int]:
    """(state, members) of the scoring consumer group."""
    group = f"{settings.app_id}-scoring"
    admin = AdminClient(client_config(settings))
    try:
        d = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=10)
    except Exception:
        return "unknown", 0
    return str(d.state.name), len(d.members)


def test_three_scoring_workers_lose_one_and_every_event_is_scored_once(
    stack_settings: Settings,
) -> None:
    settings = stack_settings.model_copy(update={"kafka": KafkaSettings(
        bootstrap_servers=stack_settings.kafka.bootstrap_servers, local_broker=False,
        partitions=6)})
    n = 6000
    with Stack(settings) as stack:
        stack.spawn("scoring-2")
        stack.spawn("scoring-3")
        stack.wait_until_serving()
        wait_for(lambda: scoring_members(settings), lambda s: s == ("STABLE", 3), 90,
                 "three scoring members")
        sdk = EventProducer(settings)
        for i in range(n):
            sdk.send_event({"event_id": f"s-{i}", "entity_id": f"u{i % 97}",
                            "ts": 1_767_225_600_000 + i, "data": {"x": float(i % 13)}})
            if i % 200 == 199:
                sdk.flush()
                time.sleep(0.1)
            if i == n // 3:
                sdk.flush()
                stack.kill("scoring-2")
                wait_for(lambda: scoring_members(settings), lambda s: s == ("STABLE", 2), 60,
                         "the group back to stable with two members")
        sdk.flush()
        # The killed worker's open transaction is aborted; its partitions' records are scored
        # again by the others, once: a read_committed subscriber sees each prediction once.
        on_topic = read_topic(settings, "predictions", n)
        served = Counter(Prediction.from_bytes(v).event_id for _, _, v in on_topic)
        assert served == Counter({f"s-{i}": 1 for i in range(n)})
        rows = wait_for(lambda: query(settings, "SELECT count(), uniqExact(event_id), "
                                                "count(DISTINCT _partition) FROM predictions "
                                                "SETTINGS final = 0").rows[0],
                        lambda r: r[1] == n, 120, "a row for every event")
        stack.check()
    assert list(rows) == [n, n, 6]
