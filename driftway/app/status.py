"""Live status of a running Driftway: throughput, consumer lag per processor, champion, drift.

``StatusProbe.read()`` takes one reading from Kafka (watermarks, committed offsets, the
deployments topic) and ClickHouse (the last drift event); ``live_status`` refreshes it in place
with rich on a terminal, and prints a plain line every few seconds when output is not one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from driftway.io.kafka import client_config, take
from driftway.io.registry import ModelRegistry
from driftway.schemas import topology
from driftway.schemas.events import ProcessHealth
from driftway.settings import Settings

log = logging.getLogger(__name__)

#: Each processor: its consumer group suffix and the topics it consumes.
PROCESSORS: dict[str, tuple[str, ...]] = {p.name: p.reads for p in topology.PROCESSORS}


@dataclass
class Reading:
    """One look at the system."""

    at: float
    ends: dict[str, int]  # topic key → sum of high watermarks
    lag: dict[str, int | None]  # processor → records behind (None: no committed offsets yet)
    champion: str | None = None
    shadows: list[str] = field(default_factory=list)
    last_drift: str | None = None
    rates: dict[str, float] = field(default_factory=dict)  # topic key → records/s
    restarts: dict[str, int] = field(default_factory=dict)  # process → times started again
    waiting: dict[str, str] = field(default_factory=dict)  # processor → what it waits for


class StatusProbe:
    """Reads the status; keep one per display (it holds a consumer and a registry)."""

    def __init__(self, settings: Settings, last_drift: Callable[[], str | None] | None = None):
        self.settings = settings
        self.admin = AdminClient(client_config(settings))
        self.consumer = Consumer({**client_config(settings),
                                  "group.id": f"{settings.app_id}-status",
                                  "enable.auto.commit": False})
        self.registry: ModelRegistry | None = None
        self.last_drift = last_drift or (lambda: query_last_drift(settings))
        self.previous: Reading | None = None
        self._partitions: dict[str, list[int]] = {}
        self.health = HealthReader(settings)

    def _parts(self, key: str) -> list[int]:
        if key not in self._partitions:
            topic = self.settings.topic(key)
            meta = self.consumer.list_topics(topic, timeout=5).topics.get(topic)
            self._partitions[key] = sorted(meta.partitions) if meta and meta.partitions else []
        return self._partitions[key]

    def read(self) -> Reading:
        keys = sorted({k for topics in PROCESSORS.values() for k in topics} | {"raw"})
        highs: dict[tuple[str, int], int] = {}
        for key in keys:
            for p in self._parts(key):
                tp = TopicPartition(self.settings.topic(key), p)
                highs[(key, p)] = self.consumer.get_watermark_offsets(tp, timeout=5,
                                                                       cached=False)[1]
        ends = {key: sum(h for (k, _), h in highs.items() if k == key) for key in keys}
        reading = Reading(at=time.monotonic(), ends=ends, lag=self._lags(highs))
        if self.previous is not None and reading.at > self.previous.at:
            dt = reading.at - self.previous.at
            reading.rates = {k: (ends[k] - self.previous.ends.get(k, 0)) / dt for k in ends}
        self.previous = reading
        self._deployment(reading)
        reading.waiting = self.health.waiting()
        try:
            reading.last_drift = self.last_drift()
        except Exception as exc:  # the sink may be restarting: show the rest
            log.debug("last drift unavailable: %s", exc)
        return reading

    def _lags(self, highs: dict[tuple[str, int], int]) -> dict[str, int | None]:
        requests = {}
        for name, keys in PROCESSORS.items():
            if not topology.processor(name).enabled(self.settings):
                continue  # not part of this stack (an opt-in agent that is off)
            tps = [TopicPartition(self.settings.topic(k), p) for k in keys for p in self._parts(k)]
            requests[name] = ConsumerGroupTopicPartitions(f"{self.settings.app_id}-{name}", tps)
        lags: dict[str, int | None] = {}
        for name, request in requests.items():  # the admin API takes one group per call
            try:
                future = self.admin.list_consumer_group_offsets([request], request_timeout=5)
                committed = future[request.group_id].result(timeout=10).topic_partitions
            except Exception:
                lags[name] = None
                continue
            keyed = {self.settings.topic(k): k for k in PROCESSORS[name]}
            total, known = 0, False
            for tp in committed:
                high = highs.get((keyed[tp.topic], tp.partition), 0)
                if tp.offset >= 0:
                    known = True
                    total += max(0, high - tp.offset)
                else:
                    total += high
            lags[name] = total if known else None
        return lags

    def _deployment(self, reading: Reading) -> None:
        try:
            if self.registry is None:
                self.registry = ModelRegistry(self.settings, name="status")
            self.registry.poll(0.05)
        except Exception as exc:
            log.debug("registry unavailable: %s", exc)
            return
        d = self.registry.deployments.get(self.settings.processing.model_name)
        if d is not None:
            reading.champion, reading.shadows = d.champion, list(d.shadows)

    def close(self) -> None:
        self.consumer.close()
        self.health.close()
        if self.registry is not None:
            self.registry.close()


class HealthReader:
    """The health topic, read as it grows: the latest record of each process."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topic("health")
        self.consumer = Consumer({**client_config(settings),
                                  "group.id": f"{settings.app_id}-status-health",
                                  "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.latest: dict[str, ProcessHealth] = {}

    def waiting(self) -> dict[str, str]:
        """Each processor that waits, and for what: '<reason> (since 12:03:04 UTC, 7 tries)'."""
        while messages := take(self.consumer, 1000, 0.05):
            for message in messages:
                if message.error() is not None or message.value() is None:
                    continue
                try:
                    health = ProcessHealth.from_bytes(message.value())
                except ValueError:
                    continue  # not ours to judge: the status shows the rest
                self.latest[f"{health.processor}/{health.instance}"] = health
        return {h.processor: f"{h.reason} (since {h.since:%H:%M:%S} UTC, {h.attempts} tries)"
                for h in self.latest.values() if h.state == "waiting"}

    def close(self) -> None:
        self.consumer.close()


def query_last_drift(settings: Settings) -> str | None:
    """The last drift event, in one line, from ClickHouse."""
    from driftway.app.query import query

    rows = query(settings, "SELECT ts, kind, detector, ifNull(feature, ''), "
                           "substring(ifNull(version, ''), 1, 12) FROM drift_events "
                           "ORDER BY ts DESC LIMIT 1").rows
    if not rows:
        return None
    ts, kind, detector, feature, version = rows[0]
    what = f"feature {feature}" if feature else f"version {version}"
    return f"{kind} drift ({detector}) on {what} at {str(ts)[11:19]} UTC"


def render(reading: Reading, model: str) -> Table:
    """The status as a table."""
    table = Table(title="Driftway status", title_justify="left", show_header=True,
                  header_style="bold")
    table.add_column("processor")
    table.add_column("lag (records)", justify="right")
    table.add_column("restarts", justify="right")
    table.add_column("state")
    for name, lag in reading.lag.items():
        state = f"[yellow]waiting: {reading.waiting[name]}[/]" if name in reading.waiting \
            else "running"
        table.add_row(name, "—" if lag is None else f"{lag:,}",
                      str(reading.restarts.get(name, 0)), state)
    rates = reading.rates
    table.caption = (
        f"events in {rates.get('raw', 0):,.0f}/s · predictions out "
        f"{rates.get('predictions', 0):,.0f}/s · labels {rates.get('labels', 0):,.0f}/s\n"
        f"{model}: champion {(reading.champion or '—')[:12]}"
        + (f", shadows {', '.join(s[:12] for s in reading.shadows)}" if reading.shadows else "")
        + f"\nlast drift: {reading.last_drift or 'none'}"
        + (f"\nbroker restarts: {reading.restarts['kafka']}" if "kafka" in reading.restarts
           else ""))
    table.caption_justify = "left"
    return table


def line(reading: Reading, model: str) -> str:
    """The status as one log line."""
    lags = ", ".join(f"{n} {'-' if v is None else v}" for n, v in reading.lag.items())
    return (f"status: in {reading.rates.get('raw', 0):.0f}/s, out "
            f"{reading.rates.get('predictions', 0):.0f}/s; lag: {lags}; champion "
            f"{(reading.champion or '-')[:12]}, shadows {len(reading.shadows)}; last drift: "
            f"{reading.last_drift or 'none'}"
            + ("; restarts: " + ", ".join(f"{n} {k}" for n, k in reading.restarts.items())
               if reading.restarts else "")
            + "".join(f"; {n} waiting: {w}" for n, w in reading.waiting.items()))


class LiveStatus:
    """Refreshes the status every `every` seconds in a thread, in place or as log lines.

    `extra` renders above the table (the demo's progress bars); `restarts` is the supervisor's
    count of restarts by process, shown as it grows."""

    def __init__(self, settings: Settings, console: Console, every: float = 1.0,
                 plain_every: float = 5.0, extra: RenderableType | None = None,
                 restarts: Mapping[str, int] | None = None) -> None:
        self.settings = settings
        self.restarts = restarts if restarts is not None else {}
        self.console = console
        self.every = every if console.is_terminal else plain_every
        self.extra = extra
        self.stopping = threading.Event()
        self.last: Reading | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="live-status")
        self._live: Live | None = None

    def __enter__(self) -> LiveStatus:
        if self.console.is_terminal:
            self._live = Live(self.extra or "", console=self.console, refresh_per_second=4)
            self._live.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._thread.join(10)
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def _run(self) -> None:
        probe = StatusProbe(self.settings)
        model = self.settings.processing.model_name
        try:
            while not self.stopping.is_set():
                try:
                    self.last = reading = probe.read()
                    reading.restarts = {k: v for k, v in dict(self.restarts).items() if v}
                except Exception as exc:
                    log.debug("status reading failed: %s", exc)
                    self.stopping.wait(self.every)
                    continue
                if self._live is not None:
                    parts = [p for p in (self.extra, render(reading, model)) if p is not None]
                    self._live.update(Group(*parts))
                else:
                    self.console.print(line(reading, model), highlight=False, soft_wrap=True)
                self.stopping.wait(self.every)
        finally:
            probe.close()
