"""`driftway query` while the pipeline runs: through the sink's 0600 Unix socket, with no TCP
port, the same refusals and limits as on the engine itself."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from driftway.app.supervisor import settings_env
from driftway.io.kafka import ensure_topics
from driftway.io.query_endpoint import query_endpoint_file, running_endpoint
from driftway.settings import QuerySettings, Settings
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(update={"query": QuerySettings(max_rows=5)})


@pytest.fixture
def sink(settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`driftway run sink`, its endpoint up."""
    ensure_topics(settings)
    log = tmp_path / "sink.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "driftway", "run", "sink"],
                                env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: running_endpoint(settings) is not None or proc.poll() is not None,
                 bool, 90, "the sink's query endpoint")
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_query(settings: Settings, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftway", "query", "--format", "json", sql],
                          env=settings_env(settings), capture_output=True, text=True,
                          timeout=90)


def test_queries_go_through_a_private_socket(settings: Settings,
                                             sink: subprocess.Popen[bytes]) -> None:
    path = running_endpoint(settings)
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    advert = query_endpoint_file(settings)
    assert stat.S_IMODE(advert.stat().st_mode) == 0o600
    assert json.loads(advert.read_text()) == {"pid": sink.pid, "socket": str(path)}
    # No TCP port to reach it by: the sink listens on none.
    listening = [c for c in psutil.Process(sink.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening == []

    done = run_query(settings, "SELECT count() AS n FROM predictions")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": 0}]

    done = run_query(settings, "SELECT * FROM file('/etc/passwd', 'LineAsString')")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: refused: the query reads file(...)"), done.stderr
    assert "root:" not in done.stdout + done.stderr

    done = run_query(settings, "SELECT name FROM system.users")
    assert done.returncode == 1 and "system.users" in done.stderr, done.stderr

    # The sink's limits: 5 rows at most.
    done = run_query(settings, "SELECT number FROM numbers(5)")
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 5, done.stderr
    done = run_query(settings, "SELECT number FROM numbers(6)")
    assert done.returncode == 1 and "max rows" in done.stderr, done.stderr

    # A refused write leaves the sink's engine working.
    assert run_query(settings, "DROP TABLE predictions").returncode == 1
    assert json.loads(run_query(settings, "SELECT count() AS n FROM labels").stdout) == [{"n": 0}]

    sink.send_signal(signal.SIGTERM)
    sink.wait(timeout=30)
    assert not path.exists() and not advert.exists()
