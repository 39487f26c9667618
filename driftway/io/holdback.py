"""Input a processor holds back while its store outside Kafka is unavailable.

The runtime (driftway.io.runtime) aborts the transaction whose store went away, and holds the
partitions back here: the whole assignment paused, each held partition's offset to read it
again from (the committed one), and the wait — since when, how many tries, the last reason,
when to try next (``driftway.logic.backoff``). Once the store answers, `release` seeks the held
partitions and resumes the assignment.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from confluent_kafka import Consumer, TopicPartition

from driftway.logic.backoff import backoff
from driftway.schemas.events import ProcessHealth

Partition = tuple[str, int]  # (topic name, partition)


class Unavailable(Exception):
    """A store outside Kafka cannot take a processor's writes now (the sink's ClickHouse is
    unreachable, or refuses inserts): neither a record's fault nor a reason to end.

    Raised by a processor's ``flush`` or ``resume_at``. The runtime aborts the transaction
    (the processor's ``abort`` forgets what it kept), holds its input back — paused, to be
    read again from the committed offsets — and asks ``resume_at`` again with back-off
    (``processing.retry_first_seconds`` doubling to ``retry_longest_seconds``) until the store
    answers; meanwhile the health topic says the processor is waiting, and why. A processor
    that raises it must be able to forget all an aborted transaction did.
    """


class HeldInput:
    """The partitions held back, and the wait for the store."""

    def __init__(self, first: float, longest: float) -> None:
        self.first, self.longest = first, longest
        #: Partition → the offset to read it again from (None: where resume_at or the
        #: committed offset says).
        self.partitions: dict[Partition, int | None] = {}
        self._reset()

    def _reset(self) -> None:
        self.since = time.time()
        self.attempts = 0
        self.reason = ""
        self.next_try = 0.0  # monotonic seconds

    def __bool__(self) -> bool:
        return bool(self.partitions)

    def hold(self, consumer: Consumer, reason: str,
             partitions: dict[Partition, int | None]) -> float:
        """Hold these partitions back too, pause the assignment, count a failed try: the
        seconds until the next."""
        self.partitions.update(partitions)
        consumer.pause(consumer.assignment())
        if self.attempts == 0:
            self.since = time.time()
        self.attempts += 1
        self.reason = reason
        delay = backoff(self.attempts, self.first, self.longest)
        self.next_try = time.monotonic() + delay
        return delay

    @property
    def due(self) -> bool:
        """True once the back-off since the last failed try has passed."""
        return time.monotonic() >= self.next_try

    def release(self, consumer: Consumer, offsets: dict[Partition, int]) -> set[int]:
        """The store is back: seek each held partition to `offsets` or where it was held, resume
        the assignment; the partition numbers released."""
        for (topic, partition), rewind in self.partitions.items():
            offset = offsets.get((topic, partition), rewind)
            if offset is not None:
                consumer.seek(TopicPartition(topic, partition, offset))
        consumer.resume(consumer.assignment())
        numbers = {p for _, p in self.partitions}
        self.partitions.clear()
        self._reset()
        return numbers

    def forget(self, partition: Partition) -> None:
        """A partition revoked or lost: its next owner reads it."""
        self.partitions.pop(partition, None)

    def health(self, processor: str, instance: str) -> ProcessHealth:
        """What the health topic says of this process now."""
        now = datetime.now(UTC)
        waiting = bool(self.partitions)
        return ProcessHealth(
            processor=processor, instance=instance, state="waiting" if waiting else "running",
            reason=self.reason if waiting else None,
            since=datetime.fromtimestamp(self.since, UTC) if waiting else now,
            attempts=self.attempts if waiting else 0, at=now)
