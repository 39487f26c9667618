"""Shared fixtures. Integration tests run on one real Kafka broker for the session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftway.io.broker import LocalBroker, free_port
from driftway.settings import KafkaSettings, Settings


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka 3.9 broker (KRaft) on free loopback ports; yields its bootstrap address."""
    state = tmp_path_factory.mktemp("broker")
    port, controller = free_port(), free_port()
    settings = Settings(state_dir=state, kafka=KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{port}", controller_port=controller))
    with LocalBroker(settings):
        yield f"127.0.0.1:{port}"


@pytest.fixture
def stack_settings(kafka_broker: str, tmp_path: Path) -> Settings:
    """Settings of an isolated Driftway on the session broker: own topics, groups, ClickHouse."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        state_dir=tmp_path / "state",
        topic_prefix=f"t{tag}.",
        app_id=f"t{tag}",
        kafka=KafkaSettings(bootstrap_servers=kafka_broker, local_broker=False),
    )


@pytest.fixture(scope="session")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose embedded ClickHouse this test process owns.

    chDB opens one engine directory per process for the life of the process, so every test that
    uses chDB in-process shares this one; pipelines under test open theirs in child processes.
    """
    return Settings(state_dir=tmp_path_factory.mktemp("embedded"))
