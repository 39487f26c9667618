"""The topology, declared once: every topic and every processor.

A topic has a key under the topic prefix, the record it carries (its JSON Schema is published),
what its Kafka key is, its partitions, how long it keeps records (or compaction), and the
ClickHouse table the sink writes it to. A processor names the topics it reads (as one consumer
group, whose lag the live status shows) and writes, and the module that runs it (``driftway run
<name>``): adding a processor is that module and its line here. Settings (topic names), topic
creation, the live status, the supervisor, the CLI and the sink all derive from these two
tuples; nothing else lists topics or processors.

>>> from driftway.settings import Settings
>>> specs = {s.key: s for s in topic_specs(Settings())}
>>> specs["training"].partitions, specs["deployments"].config["cleanup.policy"]
(1, 'compact')
>>> [p.name for p in PROCESSORS if "served" in p.reads]
['feedback', 'drift']
>>> topic("predictions").table
'predictions'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from driftway.schemas.events import (
    ArtifactChunk,
    DeadLetter,
    Deployment,
    DriftEvent,
    ExperimentResult,
    FeedbackOutcome,
    Label,
    Metric,
    ModelState,
    ModelVersion,
    Prediction,
    ProcessHealth,
    RawEvent,
    Record,
    ReplayMark,
    Served,
    TrainingExample,
)

if TYPE_CHECKING:
    from driftway.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    """One Driftway topic."""

    key: str
    record: type[Record] | None  # None: internal state, no published schema
    keyed_by: str
    #: None: the keyed data topics' partitions (``kafka.partitions``); else fixed (1: one order).
    partitions: int | None = None
    #: Days records are kept; None: compacted (the latest record of each key stays).
    retention_days: int | None = 7
    table: str | None = None
    max_message_bytes: int | None = None
    #: Segment size of a compacted topic that is rewritten often: compaction only cleans
    #: closed segments, so small ones keep it near one record per key.
    segment_bytes: int | None = None
    #: False: written at once, outside the writer's transactions — for records that are a pure
    #: function of committed input, keyed so that the latest wins (a crash and replay writes
    #: the same again), where waiting for the commit would only add latency.
    transactional: bool = True
    #: The processor whose dead letter a bad record of this topic is; the others that read the
    #: topic pass it over, so one bad record is one dead letter (None: each reader's own).
    checked_by: str | None = None

    @property
    def compacted(self) -> bool:
        return self.retention_days is None


@dataclass(frozen=True)
class Processor:
    """One process of the pipeline: its consumer group is ``<app_id>-<name>``."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    #: The module whose ``main(settings, instance)`` runs it (``driftway run <name>``).
    module: str
    #: How it runs: on the processor runtime (driftway.io.runtime), as a faust agent, or in a
    #: loop of its own.
    runs_on: Literal["runtime", "faust", "own"] = "own"
    #: Its changelog topic, when it keeps state per input partition.
    state: str | None = None
    #: The settings section whose ``enabled`` turns it on in `driftway up` (None: always on).
    enabled_by: str | None = None

    def enabled(self, settings: Settings) -> bool:
        """True when `driftway up` runs it with these settings."""
        return self.enabled_by is None or bool(getattr(settings, self.enabled_by).enabled)

    @property
    def command(self) -> tuple[str, ...]:
        """Its command line after ``driftway``: one command runs any processor."""
        return ("run", self.name)

    @property
    def joins_group(self) -> bool:
        """True when it shares its input as a consumer group that must settle at start-up."""
        return self.runs_on in ("runtime", "faust")


TOPICS: tuple[Topic, ...] = (
    Topic("raw", RawEvent, "entity id"),
    Topic("predictions", Prediction, "entity id", table="predictions"),
    Topic("labels", Label, "event id", table="labels", checked_by="feedback"),
    # What scoring served, keyed by event id: co-partitioned with labels for the join.
    Topic("served", Served, "event id", checked_by="feedback"),
    # One partition: one total order for the learner.
    Topic("training", TrainingExample, "none", partitions=1, retention_days=30, table="training",
          checked_by="learner"),
    Topic("model-versions", ModelVersion, "model@version", partitions=1, retention_days=None,
          table="model_versions"),
    Topic("model-artifacts", ArtifactChunk, "model@version/index", partitions=1,
          retention_days=None, max_message_bytes=8 * 1024 * 1024),
    Topic("deployments", Deployment, "model", partitions=1, retention_days=None,
          table="deployments"),
    # What each deployed line has learned so far, rewritten after each of the learner's
    # batches: scoring serves it between two releases. Compacted by model, so it holds one
    # record per model. Each state is a function of committed training records alone (a
    # replay rebuilds it bit for bit), so it need not wait for the learner's commit.
    Topic("model-updates", ModelState, "model", partitions=1, retention_days=None,
          max_message_bytes=64 * 1024 * 1024, segment_bytes=16 * 1024 * 1024,
          transactional=False),
    Topic("drift", DriftEvent, "model", partitions=1, retention_days=30, table="drift_events"),
    Topic("metrics", Metric, "model@version", partitions=1, table="metrics"),
    # A dead letter carries its record's bytes in base64 (4/3 of them) besides the reason: room
    # for a refused record as large as a topic takes by default (1 MB) and then some, or
    # refusing an oversized record would fail its processor's transaction, again at each restart.
    Topic("dead-letters", DeadLetter, "source topic", retention_days=30, table="dead_letters",
          max_message_bytes=8 * 1024 * 1024),
    # Which dead letters `driftway dead-letters replay` sent again, by source topic/partition/
    # offset: written in the transaction that sends each, so none is sent twice. Compacted: a
    # mark outlives its dead letter.
    Topic("dead-letter-replays", ReplayMark, "source topic/partition/offset", partitions=1,
          retention_days=None),
    Topic("feedback", FeedbackOutcome, "event id", table="feedback"),
    # What `driftway experiment` found, one record per contender: the command writes it here
    # and the sink lands it (the embedded ClickHouse belongs to the sink's process).
    Topic("experiments", ExperimentResult, "experiment id", partitions=1, retention_days=30,
          table="experiments"),
    # What each process is doing when it is not simply running (a sink waiting for its
    # ClickHouse): the latest record per processor/instance, read by the live status.
    Topic("health", ProcessHealth, "processor/instance", partitions=1, retention_days=None,
          transactional=False),
    # Scoring's per-entity feature state, by input partition (its changelog).
    Topic("features-state", None, "entity id", retention_days=None),
    # The feedback join's entries (served events waiting for labels and the reverse), by event id.
    Topic("feedback-state", None, "event id", retention_days=None),
)

#: Topics a command writes, not a processor: `driftway dead-letters replay`'s marks (read by
#: it too), `driftway experiment`'s results (landed by the sink).
COMMAND_TOPICS = ("dead-letter-replays", "experiments")

#: Topics every version of a model is read from (compacted: the registry).
REGISTRY = ("model-versions", "model-artifacts", "deployments")

PROCESSORS: tuple[Processor, ...] = (
    # Features and scoring in one processor: both are keyed by entity id, so a raw event's
    # features are made where it is scored, without a topic, a hop and a transaction between
    # (as Kafka Streams runs the operators of one sub-topology in one task; bench/README.md).
    Processor("scoring", reads=("raw",),
              writes=("predictions", "served", "dead-letters", "features-state"),
              module="driftway.streams.scoring", runs_on="runtime", state="features-state"),
    Processor("feedback", reads=("served", "labels"),
              writes=("training", "feedback", "dead-letters", "feedback-state"),
              module="driftway.streams.feedback", runs_on="runtime", state="feedback-state"),
    Processor("learner", reads=("training",),
              writes=(*REGISTRY, "model-updates", "metrics", "drift", "dead-letters"),
              module="driftway.streams.learner", runs_on="runtime"),
    Processor("drift", reads=("served",), writes=("drift", "dead-letters"),
              module="driftway.streams.drift", runs_on="runtime"),
    # A few drift events an hour: a faust agent with a windowed table, not the runtime. Its
    # table's changelog is faust's own (`<app_id>-alerts-drift-alarms-changelog`, declared by
    # faust): the one topic not listed here.
    Processor("alerts", reads=("drift",), writes=(), module="driftway.streams.alerts",
              runs_on="faust", enabled_by="alerts"),
    # The sink (last: the supervisor stops it after the others) reads every topic that has a
    # table; it writes ClickHouse, and in Kafka, with its input offsets in the runtime's
    # transactions, the tombstones of the artifacts the registry's retention rule prunes; and
    # its health, while it waits for a ClickHouse that went away.
    Processor("sink", reads=tuple(t.key for t in TOPICS if t.table),
              writes=("model-artifacts", "health"),
              module="driftway.consumers.sink", runs_on="runtime"),
)

TOPIC_KEYS: tuple[str, ...] = tuple(t.key for t in TOPICS)

#: Every wire format, by the topic key that carries it.
TOPIC_RECORDS: dict[str, type[Record]] = {t.key: t.record for t in TOPICS
                                           if t.record is not None}


def topic(key: str) -> Topic:
    """The topic of one key (KeyError with the known keys otherwise)."""
    for t in TOPICS:
        if t.key == key:
            return t
    raise KeyError(f"unknown topic {key!r}; known: {', '.join(TOPIC_KEYS)}")


def processor(name: str) -> Processor:
    """The processor of one name."""
    for p in PROCESSORS:
        if p.name == name:
            return p
    raise KeyError(f"unknown processor {name!r}; known: {', '.join(p.name for p in PROCESSORS)}")


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the broker creates it: full name, partitions and broker config."""

    key: str
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every Driftway topic as the broker should have it, for these settings."""
    specs = []
    for t in TOPICS:
        if t.compacted:
            config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
        else:
            config = {"cleanup.policy": "delete", "retention.ms": str(t.retention_days * DAY_MS)}
        if t.max_message_bytes is not None:
            config["max.message.bytes"] = str(t.max_message_bytes)
        if t.segment_bytes is not None:
            config["segment.bytes"] = str(t.segment_bytes)
        specs.append(TopicSpec(t.key, settings.topic(t.key), t.partitions or
                               settings.kafka.partitions, settings.kafka.replication_factor,
                               config))
    return specs
