"""Topic settings, defined once: partitions, retention and compaction of every Driftway topic.

>>> from driftway.settings import Settings
>>> specs = {s.key: s for s in topic_specs(Settings())}
>>> specs["training"].partitions, specs["deployments"].config["cleanup.policy"]
(1, 'compact')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from driftway.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its key in Settings.topic(), full name, partitions and broker config."""

    key: str
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every Driftway topic with its settings, derived from Settings."""
    p = settings.kafka.partitions
    rf = settings.kafka.replication_factor
    delete_7d = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    layout: list[tuple[str, int, dict[str, str]]] = [
        ("raw", p, delete_7d),
        ("features", p, delete_7d),
        ("predictions", p, delete_7d),
        ("labels", p, delete_7d),
        # What scoring served, keyed by event id: co-partitioned with labels for the join.
        ("served", p, delete_7d),
        # One partition: one total order for the learner.
        ("training", 1, {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
        ("model-versions", 1, compact),
        ("model-artifacts", 1, {**compact, "max.message.bytes": str(8 * 1024 * 1024)}),
        ("deployments", 1, compact),
        ("drift", 1, {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
        ("metrics", 1, delete_7d),
        ("dead-letters", p, {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
        ("feedback", p, delete_7d),
    ]
    return [TopicSpec(k, settings.topic(k), n, rf, dict(c)) for k, n, c in layout]
