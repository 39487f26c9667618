"""Drift end to end on the real broker: an abrupt concept change gives a drift event, a
challenger and a promotion, all visible in ClickHouse."""

from __future__ import annotations

import random
import time

import pytest

from driftway.app.query import query
from driftway.app.supervisor import Stack
from driftway.sdk import EventProducer
from driftway.settings import DriftSettings, PolicySettings, ProcessingSettings, Settings
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def flipped_concept(n: int, change_at: int, seed: int = 3):
    """Two uniform features; the approval rule flips at `change_at` (a pure concept change:
    the features' distribution stays the same, so data drift has nothing to see)."""
    rng = random.Random(seed)
    for i in range(n):
        a, b = rng.random(), rng.random()
        y = (a + b > 1.0) if i < change_at else (a + b < 1.0)
        yield {"event_id": f"d-{i}", "entity_id": f"u{i % 50}", "ts": 1_767_225_600_000 + i,
               "data": {"a": a, "b": b}}, y


def test_an_abrupt_concept_change_gives_drift_a_challenger_and_a_promotion(
    stack_settings: Settings,
) -> None:
    settings = stack_settings.model_copy(update={
        "processing": ProcessingSettings(publish_every=500, metrics_every=250),
        "drift": DriftSettings(concept_warmup=300, concept_cooldown=1000),
        "policy": PolicySettings(min_labels=150, alpha=0.01),
    })
    n, change_at, delay = 6000, 2500, 20
    with Stack(settings) as stack:
        stack.wait_until_serving()
        sdk = EventProducer(settings)
        pending: list[tuple[str, bool]] = []
        for i, (event, label) in enumerate(flipped_concept(n, change_at)):
            sdk.send_event(event)
            pending.append((event["event_id"], label))
            if len(pending) > delay:
                event_id, y = pending.pop(0)
                sdk.send_label({"event_id": event_id, "label": y})
            if i % 100 == 99:
                sdk.flush()
                time.sleep(0.08)
        for event_id, y in pending:
            sdk.send_label({"event_id": event_id, "label": y})
        sdk.flush()

        drift = wait_for(
            lambda: query(settings, "SELECT kind, detector, version, event_id, source_offset, "
                                    "change_point FROM drift_events WHERE kind = 'concept' "
                                    "ORDER BY source_offset").rows,
            lambda rows: len(rows) >= 1, 120, "a concept drift event")
        actions = wait_for(
            lambda: query(settings, "SELECT action, by, version, reason FROM deployments "
                                    "WHERE by = 'policy' ORDER BY ts").rows,
            lambda rows: [a for a, *_ in rows][:2] == ["shadow", "promote"], 120,
            "a challenger and its promotion")
        parents = dict(query(settings, "SELECT version, parent FROM model_versions").rows)
        promoted_at = query(settings, "SELECT max(ts) FROM deployments WHERE action = 'promote'"
                            ).rows[0][0]
        served_versions = wait_for(
            lambda: {v for (v,) in query(settings, "SELECT DISTINCT version FROM predictions "
                                                   "WHERE predicted_at > parseDateTime64BestEffort("
                                                   f"'{promoted_at}', 3)").rows},
            lambda versions: bool(versions), 60, "predictions after the promotion")
        stack.check()

    kind, detector, _version, event_id, offset, change_point = drift[0]
    assert (kind, detector) == ("concept", "adwin") and event_id.startswith("d-")
    # Detected after the change, and within a bounded delay of it (training offsets follow
    # event order closely here: one label per event).
    assert change_at - 200 <= offset <= change_at + 1500, drift
    assert change_point is not None and change_point <= offset
    # No alarm before the change.
    assert all(row[4] >= change_at - 200 for row in drift)
    shadow, promote = actions[0], actions[1]
    assert "challenger" in shadow[3] and "drift" in shadow[3]
    assert "challenger better" in promote[3]
    # The promoted version is the challenger, or a later version of its line (it keeps
    # learning, and auto_update replaces it in the shadow slot, while the test collects labels).
    lineage, v = [], promote[2]
    while v is not None and v not in lineage:
        lineage.append(v)
        v = parents.get(v)
    assert shadow[2] in lineage
    # The promoted challenger's line serves now: a version descending from the challenger.
    def ancestry(version: str | None) -> list[str]:
        chain: list[str] = []
        while version is not None and version not in chain:
            chain.append(version)
            version = parents.get(version)
        return chain

    assert any(shadow[2] in ancestry(v) for v in served_versions)
