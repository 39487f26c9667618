"""The production deployment files, checked by parsing them (no Docker, no network).

docker-compose.yml must use the official Kafka and ClickHouse images, run only real ``driftway``
sub-commands, and set only real Driftway settings; deploy/Dockerfile must build the package.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pydantic import BaseModel

from driftway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# ${VAR}, ${VAR:-default}, ${VAR:?error}... as Compose interpolates them.
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}")


# --- helpers -------------------------------------------------------------------------------


def _setting_env_names(model: type[BaseModel], prefix: str = "DRIFTWAY_") -> set[str]:
    """Every environment name of a settings model: nested models joined with ``__``."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _setting_env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


SETTING_NAMES = _setting_env_names(Settings)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def driftway_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services running the Driftway image (built from deploy/Dockerfile)."""
    found = {
        name: svc
        for name, svc in services.items()
        if "build" in svc or str(svc.get("image", "")).startswith("driftway")
    }
    assert found, "no Driftway services in docker-compose.yml"
    return found


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued instruction"
    return instructions


# --- settings names (the derivation itself) --------------------------------------------------


def test_setting_names_are_derived_from_the_settings_model():
    assert "DRIFTWAY_STATE_DIR" in SETTING_NAMES
    assert "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS" in SETTING_NAMES
    assert "DRIFTWAY_SINK__QUERY_PORT" in SETTING_NAMES
    # Nested groups are expanded, never settable as a whole.
    assert "DRIFTWAY_KAFKA" not in SETTING_NAMES
    assert all(n == n.upper() and n.startswith("DRIFTWAY_") for n in SETTING_NAMES)


# --- docker-compose.yml ----------------------------------------------------------------------


def test_kafka_uses_the_official_image_in_kraft_mode(services):
    kafka = services["kafka"]
    assert kafka["image"].split(":")[0] == "apache/kafka"
    env = _environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    assert kafka.get("volumes"), "kafka data must live in a volume"


def test_clickhouse_uses_the_official_image(services):
    clickhouse = services["clickhouse"]
    assert clickhouse["image"].split(":")[0] == "clickhouse/clickhouse-server"
    env = _environment(clickhouse)
    assert env["CLICKHOUSE_USER"] == "driftway"
    # The password comes from the environment and is required, never written in the file.
    assert re.fullmatch(r"\$\{CLICKHOUSE_PASSWORD:\?[^}]*\}", env["CLICKHOUSE_PASSWORD"])
    assert "/ping" in " ".join(clickhouse["healthcheck"]["test"])
    assert clickhouse.get("volumes"), "clickhouse data must live in a volume"


def test_driftway_services_build_the_image_and_wait_for_their_dependencies(driftway_services):
    assert set(driftway_services) >= {"topics", "features", "scoring", "sink"}
    for name, svc in driftway_services.items():
        build = svc["build"]
        assert build["context"] == ".", name
        assert build["dockerfile"] == "deploy/Dockerfile", name
        assert svc["image"] == "driftway:latest", name
        deps = svc["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy", name
        assert deps["clickhouse"]["condition"] == "service_healthy", name
        if name != "topics":
            assert deps["topics"]["condition"] == "service_completed_successfully", name
    assert driftway_services["topics"]["restart"] == "no"


def test_driftway_services_share_the_env_block(compose, driftway_services):
    shared = compose["x-driftway-env"]
    for name, svc in driftway_services.items():
        assert _environment(svc) == {k: str(v) for k, v in shared.items()}, name


def test_driftway_env_names_are_real_settings(services):
    unknown = {
        f"{name}: {key}"
        for name, svc in services.items()
        for key in _environment(svc)
        if key.startswith("DRIFTWAY_") and key not in SETTING_NAMES
    }
    assert not unknown, f"not Driftway settings: {sorted(unknown)}"


def test_driftway_env_values_are_valid_settings(compose, monkeypatch):
    for key in SETTING_NAMES:
        monkeypatch.delenv(key, raising=False)
    for key, value in compose["x-driftway-env"].items():
        monkeypatch.setenv(key, _INTERPOLATION.sub("secret-from-the-environment", str(value)))
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.kafka.local_broker is False
    assert not settings.embedded_clickhouse
    assert settings.clickhouse_dsn_resolved == (
        "http://driftway:secret-from-the-environment@clickhouse:8123")
    assert settings.signing_key is not None


def test_driftway_commands_exist_in_the_cli(driftway_services):
    from driftway.cli import cli  # imported here: a missing CLI fails only this test

    for name, svc in driftway_services.items():
        command = svc["command"]
        assert isinstance(command, list), f"{name}: command must be an exec-form list"
        assert command[0] == "driftway", name
        cmd: click.Command = cli
        path = ["driftway"]
        for token in command[1:]:
            if token.startswith("-") or not isinstance(cmd, click.Group):
                break
            assert token in cmd.commands, f"{name}: no `{' '.join(path)} {token}` command"
            cmd = cmd.commands[token]
            path.append(token)
        assert not isinstance(cmd, click.Group), f"{name}: `{' '.join(path)}` is a group"


# --- deploy/Dockerfile -----------------------------------------------------------------------


def test_dockerfile_builds_the_package_on_python_311():
    instructions = _dockerfile_instructions()
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert froms and froms[0].startswith("python:3.11"), froms
    runs = [shlex.split(args) for kw, args in instructions if kw == "RUN"]
    assert any(r[:2] == ["pip", "install"] and "--no-cache-dir" in r and "." in r for r in runs), (
        "the image must `pip install --no-cache-dir .`"
    )
    users = [args for kw, args in instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    cmds = [args for kw, args in instructions if kw == "CMD"]
    assert cmds and yaml.safe_load(cmds[-1])[0] == "driftway"


def test_dockerfile_copies_every_package_and_the_build_files():
    copied: set[str] = set()
    for kw, args in _dockerfile_instructions():
        if kw == "COPY":
            *sources, _dest = [a for a in shlex.split(args) if not a.startswith("--")]
            copied |= {s.rstrip("/") for s in sources}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in includes}
    assert packages <= copied, f"packages not copied: {sorted(packages - copied)}"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    missing = sorted(s for s in copied if not (ROOT / s).exists())
    assert not missing, f"COPY sources missing from the repository: {missing}"
