"""Dead letters and their replay marks in Kafka: read from their topics, and sent again.

The dead-letters topic is the source of truth: read with read_committed from its beginning, it
holds every dead letter a processor committed, whether the stack runs or not (the sink's
ClickHouse table follows it, later). The replay marks (topic ``dead-letter-replays``, compacted)
say which were sent again. A replay writes each record and its mark in one transaction under one
transactional id: starting it fences an earlier replay and ends what that one left open, so the
marks read after it are complete, and a replay that crashes leaves each record sent with its
mark or not at all.
"""

from __future__ import annotations

import getpass
import logging
import socket
from collections.abc import Iterable
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message, Producer

from driftway.io.kafka import produce, producer_config, read_to_end
from driftway.logic.dead_letters import mark_key, payload
from driftway.schemas.events import DeadLetter, ReplayMark
from driftway.settings import Settings

log = logging.getLogger(__name__)

#: Records sent (with their marks) per transaction.
CHUNK = 500


def read_dead_letters(settings: Settings, timeout: float = 60.0) -> list[DeadLetter]:
    """Every committed dead letter on the topic (one that does not decode is logged, skipped)."""
    letters = []
    for msg in read_to_end(settings, settings.topic("dead-letters"), timeout=timeout):
        try:
            letters.append(DeadLetter.from_bytes(msg.value() or b""))
        except ValueError as exc:  # a client other than Driftway's wrote it
            log.warning("dead letter at %s[%d]@%d does not decode: %s", msg.topic(),
                        msg.partition(), msg.offset(), exc)
    return letters


def read_marks(settings: Settings, timeout: float = 60.0) -> dict[str, ReplayMark]:
    """The replay marks, by their key (``source topic/partition/offset``): the latest of each."""
    marks: dict[str, ReplayMark] = {}
    for msg in read_to_end(settings, settings.topic("dead-letter-replays"), timeout=timeout):
        key = (msg.key() or b"").decode(errors="replace")
        try:
            marks[key] = ReplayMark.from_bytes(msg.value() or b"")
        except ValueError as exc:
            if msg.value() is None:  # a tombstone: the mark was withdrawn
                marks.pop(key, None)
            else:
                log.warning("replay mark %r does not decode: %s", key, exc)
    return marks


def operator() -> str:
    """Who runs this replay: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Replayer:
    """Sends dead letters' records again, each with its replay mark in the same transaction.

    Open it before reading the marks: initialising its transactional id fences any replay
    still running and completes or aborts what it left, so the marks read next are all there
    will be (two replays at once cannot both send one record).
    """

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.settings = settings
        self.marks_topic = settings.topic("dead-letter-replays")
        self._errors: list[str] = []
        self.producer = Producer(producer_config(settings, **{
            "transactional.id": f"{settings.app_id}-dead-letters-replay",
            "client.id": "dead-letters-replay",
            "transaction.timeout.ms": 60_000,
            "message.max.bytes": 8 * 1024 * 1024,
            "on_delivery": self._on_delivery}))
        self.producer.init_transactions(timeout)
        self.by = operator()

    def close(self) -> None:
        """Serve the last delivery reports (every transaction is committed or aborted)."""
        self.producer.flush(10)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err.str())

    def send(self, letters: Iterable[DeadLetter]) -> int:
        """Send each dead letter's original record to its source topic and partition, with its
        mark, CHUNK a transaction; returns how many were sent (all, or it raises: what a
        failed transaction held is not sent, nor marked)."""
        sent, chunk = 0, []
        for letter in letters:
            chunk.append(letter)
            if len(chunk) == CHUNK:
                sent += self._transaction(chunk)
                chunk = []
        if chunk:
            sent += self._transaction(chunk)
        return sent

    def _transaction(self, letters: list[DeadLetter]) -> int:
        self.producer.begin_transaction()
        try:
            now = datetime.now(UTC)
            for letter in letters:
                key = letter.key.encode() if letter.key is not None else None
                # Its own partition: beside the entity's (or event's) other records, whichever
                # partitioner the app that sent it used.
                produce(self.producer, letter.source_topic, key, payload(letter), None,
                        letter.source_partition)
                mark = ReplayMark(source_topic=letter.source_topic,
                                  source_partition=letter.source_partition,
                                  source_offset=letter.source_offset,
                                  processor=letter.processor, replayed_at=now, by=self.by)
                produce(self.producer, self.marks_topic, mark_key(letter), mark.to_bytes(),
                        None)
            self.producer.commit_transaction(60)
        except BaseException:
            try:
                self.producer.abort_transaction(10)
            except Exception as exc:  # it times out on the broker: nothing of it is visible
                log.warning("could not abort the replay's transaction: %s", exc)
            if self._errors:
                raise RuntimeError(f"not sent: {self._errors[0]}") from None
            raise
        return len(letters)
