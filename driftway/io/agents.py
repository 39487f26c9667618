"""faust-streaming for low-rate agents: an app factory that connects as every other client of
the process does (the same brokers, TLS files and SASL user as ``driftway.io.kafka``).

The per-event data plane runs on ``driftway.io.runtime``: faust's per-message machinery cost more
than the work it carried (bench/passthrough.py). What is kept here serves agents whose rate makes
that cost irrelevant (control plane, alerting).
"""

from __future__ import annotations

import ssl

import faust
from faust.types.auth import CredentialsT

from driftway.settings import Settings


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of Kafka connections, from the same files confluent-kafka is given:
    brokers verified against ``ssl_cafile`` (default: the system's CAs), the client
    certificate presented when set, host names checked unless ``ssl_check_hostname`` is off."""
    kafka = settings.kafka
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if kafka.ssl_cafile is None else str(kafka.ssl_cafile))
    if kafka.ssl_certfile is not None:
        context.load_cert_chain(str(kafka.ssl_certfile), keyfile=str(kafka.ssl_keyfile))
    context.check_hostname = kafka.ssl_check_hostname
    return context


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """faust's credentials for the configured security protocol (None for PLAINTEXT): the
    same SASL user, mechanism and TLS files as ``driftway.io.kafka.client_config``."""
    kafka = settings.kafka
    context = kafka_ssl_context(settings) if kafka.uses_tls else None
    if kafka.uses_sasl and kafka.sasl_password is not None:  # validation ensured all three
        return faust.SASLCredentials(
            username=kafka.sasl_username, password=kafka.sasl_password.get_secret_value(),
            ssl_context=context, mechanism=kafka.sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def make_app(settings: Settings, processor: str) -> faust.App:
    """A faust app for one processor; its id is the consumer group and changelog prefix."""
    datadir = (settings.state_dir / "faust").resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"{settings.app_id}-{processor}",
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        stream_buffer_maxsize=max(4096, settings.processing.batch_size * 4),
        broker_commit_every=10_000,
        # A crashed worker's partitions move to the others after 10 s (faust's default is 60 s).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        broker_commit_interval=1.0,
        table_cleanup_interval=60.0,
    )
