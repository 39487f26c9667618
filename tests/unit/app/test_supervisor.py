"""The supervisor: its hand-over of settings to child processes, and what the live status shows
of its restarts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from driftway.app.supervisor import settings_env
from driftway.settings import Settings


def test_settings_env_rebuilds_the_same_settings(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    original = Settings(state_dir=tmp_path, topic_prefix="x.", clickhouse_dsn="http://h:8123")
    env = settings_env(original)
    for key in [k for k in env if k.startswith("DRIFTWAY_")]:
        monkeypatch.setenv(key, env[key])
    rebuilt = Settings()
    assert rebuilt.model_dump() == original.model_dump() | {"state_dir": tmp_path.resolve()}
    assert rebuilt.clickhouse_dsn_resolved == "http://h:8123"


#: A settings object with secrets the code of settings_env never names: one at the top, one in a
#: nested group (as a new setting would add them).
EXTENDED = """
from pydantic import BaseModel, SecretStr
from driftway.settings import KafkaSettings, Settings

class Vault(BaseModel):
    token: SecretStr | None = None

class Extended(Settings):
    api_key: SecretStr | None = None
    vault: Vault = Vault()
"""


def test_every_secret_reaches_a_child_process(tmp_path: Path) -> None:
    namespace: dict[str, object] = {}
    # The same class, here and in the child (compiled without this module's __future__ import).
    exec(compile(EXTENDED, "<extended>", "exec", dont_inherit=True), namespace)  # noqa: S102
    extended = namespace["Extended"]
    original = extended(  # type: ignore[operator]
        state_dir=tmp_path, clickhouse_dsn="http://u:dsn-secret@h:8123",
        signing_key="signing-secret-0123", api_key="new-secret-1", vault={"token": "new-secret-2"},
        kafka={"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
               "sasl_username": "u", "sasl_password": "sasl-secret"})
    env = settings_env(original)
    child = EXTENDED + (
        "s = Extended()\n"
        "print(s.clickhouse_dsn.get_secret_value(), s.signing_key.get_secret_value(),\n"
        "      s.kafka.sasl_password.get_secret_value(), s.api_key.get_secret_value(),\n"
        "      s.vault.token.get_secret_value())\n")
    done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["http://u:dsn-secret@h:8123", "signing-secret-0123",
                                   "sasl-secret", "new-secret-1", "new-secret-2"]


def test_the_live_status_shows_restarts() -> None:
    from rich.console import Console

    from driftway.app.status import Reading, line, render

    reading = Reading(at=0.0, ends={}, lag={"scoring": 0, "sink": 3},
                      restarts={"scoring": 2, "kafka": 1})
    console = Console(width=120, record=True)
    console.print(render(reading, "default"))
    shown = console.export_text()
    assert "restarts" in shown and "broker restarts: 1" in shown
    assert re.search(r"scoring\s*│\s*0\s*│\s*2\s*│", shown), shown  # lag 0, restarted twice
    assert re.search(r"sink\s*│\s*3\s*│\s*0\s*│", shown), shown
    assert line(reading, "default").endswith("restarts: scoring 2, kafka 1")


def test_the_live_status_shows_what_a_processor_waits_for() -> None:
    from rich.console import Console

    from driftway.app.status import Reading, line, render

    waits = "ClickHouse cannot be reached: Connection refused (since 12:03:04 UTC, 7 tries)"
    reading = Reading(at=0.0, ends={}, lag={"scoring": 0, "sink": 3}, waiting={"sink": waits})
    console = Console(width=200, record=True)
    console.print(render(reading, "default"))
    shown = console.export_text()
    assert re.search(r"scoring\s*│\s*0\s*│\s*0\s*│\s*running", shown), shown
    assert re.search(r"sink\s*│\s*3\s*│\s*0\s*│\s*waiting: ClickHouse cannot be reached", shown)
    assert line(reading, "default").endswith(f"; sink waiting: {waits}")
