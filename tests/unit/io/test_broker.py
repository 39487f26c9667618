"""The local broker launcher's checks, which fail before any JVM starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from driftway.io.broker import LauncherError, LocalBroker, ensure_jars, server_properties
from driftway.settings import KafkaSettings, Settings


def test_missing_java_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LauncherError, match="`java` is not on PATH.*Java 17"):
        LocalBroker(Settings(state_dir=tmp_path)).start()


def test_missing_maven_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LauncherError, match="Maven.*make install"):
        ensure_jars(tmp_path / "libs")


def test_port_in_use_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        settings = Settings(state_dir=tmp_path,
                            kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"))
        with pytest.raises(LauncherError, match=f"port {port} .*already in use.*DRIFTWAY_KAFKA"):
            LocalBroker(settings).start()


def test_server_properties_are_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    props = dict(line.split("=", 1) for line in
                 server_properties(tmp_path, 19092, 19093).splitlines() if line)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["log.dirs"] == str(tmp_path)
