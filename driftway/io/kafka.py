"""confluent-kafka clients built from Settings, and idempotent topic creation."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from driftway.schemas.topology import topic_specs
from driftway.settings import Settings

log = logging.getLogger(__name__)

#: librdkafka's own log lines (connection attempts, queue purges at close…) go through Python
#: logging, shown from the configured log level up, instead of straight to stderr.
LIBRDKAFKA_LOG = logging.getLogger("driftway.librdkafka")

#: Consumer settings of a reader that stops at a partition's end as of now (a state restore, the
#: registry's re-read, a rebuild): librdkafka reports the end when a fetch comes back empty, and
#: the broker holds an empty fetch for fetch.wait.max.ms (500 by default) — half a second, or
#: more, spent at every end; 10 ms ends a restore of an empty changelog in 0.1 s instead of 1.6.
TO_THE_END: dict[str, Any] = {"enable.partition.eof": True, "fetch.wait.max.ms": 10}


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection settings shared by every confluent-kafka client: brokers, TLS and SASL.

    Holds the SASL password in clear (librdkafka needs it): pass it to a client, never log it.
    faust gets the same settings as credentials (``driftway.io.agents.broker_credentials``).

    >>> config = client_config(Settings())
    >>> config["bootstrap.servers"], config["security.protocol"], config["logger"].name
    ('127.0.0.1:9092', 'PLAINTEXT', 'driftway.librdkafka')
    """
    kafka = settings.kafka
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
        "logger": LIBRDKAFKA_LOG,
    }
    if kafka.uses_sasl and kafka.sasl_password is not None:  # validation ensured all three
        config["sasl.mechanisms"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.uses_tls:
        # Unset, librdkafka verifies brokers against the system's CAs, as Python's ssl does.
        for key, path in (("ssl.ca.location", kafka.ssl_cafile),
                          ("ssl.certificate.location", kafka.ssl_certfile),
                          ("ssl.key.location", kafka.ssl_keyfile)):
            if path is not None:
                config[key] = str(path)
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if kafka.ssl_check_hostname else "none")
    return config


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """An idempotent producer; murmur2 partitioning, as the Java client and faust use,
    so that a key lands on the same partition whichever client wrote it."""
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "partitioner": "murmur2_random",
        **extra,
    }


def make_producer(settings: Settings, **extra: Any) -> Producer:
    """A ready idempotent producer."""
    return Producer(producer_config(settings, **extra))


def produce(producer: Producer, topic: str, key: bytes | str | None, value: bytes | None,
            on_delivery: Callable[[KafkaError | None, Message], None] | None,
            partition: int | None = None) -> None:
    """Queue one record; when librdkafka's local queue is full, serve deliveries and retry.
    (No on_delivery: a transactional producer reports failures when it commits.)"""
    where: dict[str, Any] = {} if partition is None else {"partition": partition}
    if on_delivery is not None:
        where["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, value=value, key=key, **where)
            return
        except BufferError:
            producer.poll(0.05)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every Driftway topic that does not exist yet; return the names created.

    Idempotent: existing topics are left as they are.
    """
    admin = AdminClient(client_config(settings))
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise ConnectionError(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}; is the broker "
            "running (`driftway broker`) and DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS right?"
        ) from exc
    wanted = [
        NewTopic(s.name, s.partitions, s.replication_factor, config=s.config)
        for s in topic_specs(settings)
        if s.name not in existing
    ]
    created: list[str] = []
    if not wanted:
        return created
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    log.info("created topics: %s", ", ".join(created))
    return created


def group_stable(settings: Settings, group: str) -> bool:
    """True when a consumer group has members and is not rebalancing."""
    admin = AdminClient(client_config(settings))
    try:
        described = admin.describe_consumer_groups(
            [group], request_timeout=5)[group].result(timeout=10)
    except (KafkaException, TimeoutError):
        return False
    return described.state == ConsumerGroupState.STABLE and bool(described.members)


def committed_offsets(settings: Settings, group: str, topic: str,
                      partitions: list[int]) -> dict[int, int]:
    """The offsets a consumer group has committed on these partitions of a topic, where it has
    (without joining the group)."""
    consumer = Consumer({**client_config(settings), "group.id": group,
                         "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def take(consumer: Consumer, most: int, wait: float) -> list[Message]:
    """What librdkafka has fetched, up to `most` records (and events: errors, ends of
    partitions), waiting up to `wait` seconds for the first one only: consume(most, wait) would
    hold what came until `most` came or `wait` passed, which is most of a reader's latency when
    fewer come."""
    messages = consumer.consume(most, timeout=0)
    if messages or wait <= 0:
        return messages
    first = consumer.poll(wait)
    return [] if first is None else [first, *consumer.consume(most - 1, timeout=0)]


def read_to_end(settings: Settings, topic: str, partitions: list[int] | None = None,
                timeout: float = 60.0, purpose: str = "reader") -> Iterator[Message]:
    """Every committed record of a topic's `partitions` (default: all), from their beginning to
    their end as a read_committed subscriber sees it now, in each partition's order; the
    consumer (group ``<app_id>-<purpose>-<random>``) joins no group and commits nothing.

    It reads to librdkafka's end-of-partition event, sent for an empty partition too once its
    leader is known (a topic just created may not have one yet). Raises TimeoutError when a
    partition's end is not reached in time, KafkaException on a fatal error or a topic that
    does not exist; other errors (the broker's, passing) are logged and read through."""
    consumer = Consumer({
        **client_config(settings),
        "group.id": f"{settings.app_id}-{purpose}-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        **TO_THE_END,  # the end-of-partition event is sent for an empty partition too
        "isolation.level": "read_committed",
    })
    try:
        if partitions is None:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                missing = sorted(set(partitions) - at_end)
                raise TimeoutError(f"reading {topic}: partitions {missing} not at their end "
                                   f"after {timeout:.0f}s")
            for msg in take(consumer, 10_000, 0.05):
                error = msg.error()
                if error is None:
                    yield msg
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                elif error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise KafkaException(error)
                else:
                    log.warning("reading %s[%s]: %s", topic, msg.partition(), error)
    finally:
        consumer.close()
