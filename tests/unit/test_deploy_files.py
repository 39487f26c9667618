"""The production deployment files, checked by parsing them (no Docker, no network).

docker-compose.yml must use the official Kafka and ClickHouse images, run only real ``driftway``
sub-commands, and set only real Driftway settings; deploy/Dockerfile must build the package; the
Grafana dashboard's SQL must run on the monitoring tables (on the embedded engine); the
Kubernetes manifests in deploy/k8s/ must run one learner, several scoring replicas, and take
their settings from a ConfigMap and their secrets from a Secret.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pydantic import BaseModel

from driftway.settings import Settings, load_settings, setting_env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "driftway.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml"
DASHBOARD_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "driftway.yaml"
K8S = ROOT / "deploy" / "k8s"
CLICKHOUSE = ROOT / "deploy" / "clickhouse"
READER_XML = CLICKHOUSE / "users.d" / "driftway-reader.xml"
READER_SQL = CLICKHOUSE / "reader.sql"

#: The settings that are secrets: in the k8s Secret, never in the ConfigMap.
SECRET_SETTINGS = {"DRIFTWAY_CLICKHOUSE_DSN", "DRIFTWAY_SIGNING_KEY",
                   "DRIFTWAY_KAFKA__SASL_PASSWORD", "DRIFTWAY_QUERY__CLICKHOUSE_DSN"}
#: Environment names a Driftway container may set besides the settings.
OTHER_ENV = {"PYTHONHASHSEED"}

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


def _assert_cli_command(where: str, command: Any) -> None:
    """`command` runs a real `driftway` sub-command (not a group), in exec form."""
    from driftway.app.cli import cli  # imported here: a missing CLI fails only these tests

    assert isinstance(command, list), f"{where}: command must be an exec-form list"
    assert command[0] == "driftway", where
    cmd: click.Command = cli
    path = ["driftway"]
    for token in command[1:]:
        if token.startswith("-") or not isinstance(cmd, click.Group):
            break
        found = cmd.get_command(click.Context(cmd), token)  # lazily imported ones too
        assert found is not None, f"{where}: no `{' '.join(path)} {token}` command"
        cmd = found
        path.append(token)
    assert not isinstance(cmd, click.Group), f"{where}: `{' '.join(path)}` is a group"


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
    assert "DRIFTWAY_QUERY__MAX_ROWS" in SETTING_NAMES
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
    assert set(driftway_services) >= {"topics", "scoring", "feedback", "learner",
                                      "drift", "sink"}
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
    for name, svc in driftway_services.items():
        _assert_cli_command(name, svc["command"])


def test_every_driftway_process_runs_in_compose(driftway_services):
    from driftway.app.supervisor import PROCESSES

    commands = {tuple(svc["command"][1:]) for svc in driftway_services.values()}
    missing = {name for name, args in PROCESSES.items() if tuple(args) not in commands}
    assert not missing, f"processes without a compose service: {sorted(missing)}"


def _replicas(svc: dict[str, Any]) -> int:
    return int(svc.get("deploy", {}).get("replicas", 1))


def test_scoring_scales_and_learner_and_drift_run_once(compose, driftway_services):
    partitions = int(compose["x-driftway-env"]["DRIFTWAY_KAFKA__PARTITIONS"])
    scoring = driftway_services["scoring"]
    assert 1 < _replicas(scoring) <= partitions, "every scoring replica must get partitions"
    assert not scoring.get("volumes"), "scoring replicas must not share a state volume"
    assert "container_name" not in scoring, "a fixed container name prevents replicas"
    for name in ("learner", "drift"):
        assert driftway_services[name]["deploy"]["replicas"] == 1, name


# --- Grafana ------------------------------------------------------------------------------------

#: The ClickHouse data source plugin's macros (grafana-clickhouse-datasource pkg/macros), expanded
#: as the plugin does for a time range of one day either side of now and a 60 s interval.
_NOW = datetime.now(UTC).replace(microsecond=0)
_FROM = int((_NOW - timedelta(days=1)).timestamp())
_TO = int((_NOW + timedelta(days=1)).timestamp())
_MACROS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\$__timeFilter\(([^)]+)\)"),
     rf"\1 >= toDateTime({_FROM}) AND \1 <= toDateTime({_TO})"),
    (re.compile(r"\$__timeInterval\(([^)]+)\)"),
     r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)"),
    (re.compile(r"\$__interval_s\b"), "60"),
    (re.compile(r"\$__fromTime\b"), f"toDateTime({_FROM})"),
    (re.compile(r"\$__toTime\b"), f"toDateTime({_TO})"),
]


def _expand_macros(sql: str) -> str:
    for pattern, replacement in _MACROS:
        sql = pattern.sub(replacement, sql)
    return sql


def _dashboard_queries() -> dict[str, str]:
    """Every SQL query of the dashboard: panels' targets and annotations, by a readable name."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries[f"panel {panel['id']} {panel['title']!r} {target['refId']}"] = (
                target["rawSql"])
    for annotation in dashboard["annotations"]["list"]:
        if "target" in annotation:
            queries[f"annotation {annotation['name']!r}"] = annotation["target"]["rawSql"]
    return queries


def _grafana_expand(value: str, env: dict[str, str]) -> str:
    """$NAME and ${NAME} in a provisioning file, as Grafana expands them from its environment."""
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env[m[1]], value)


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts: container path -> repository path."""
    mounts = {}
    for volume in svc.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = source[2:]
    return mounts


def test_grafana_is_pinned_and_installs_the_clickhouse_plugin(services):
    grafana = services["grafana"]
    image, _, tag = grafana["image"].partition(":")
    assert image == "grafana/grafana"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), "pin a Grafana release"
    env = _environment(grafana)
    plugins = env.get("GF_PLUGINS_PREINSTALL", "") or env.get("GF_INSTALL_PLUGINS", "")
    assert re.search(r"(^|,)grafana-clickhouse-datasource[@ ]\d+\.\d+\.\d+", plugins), (
        "install the official ClickHouse data source plugin, at a pinned version")
    assert "3000:3000" in grafana["ports"]
    assert grafana["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]*\}",
                        env["GF_SECURITY_ADMIN_PASSWORD"])
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "deploy/grafana/provisioning"
    for source in mounts.values():
        assert (ROOT / source).exists(), source


def test_grafana_data_source_logs_in_as_driftway_read_only(services):
    grafana, clickhouse = _environment(services["grafana"]), _environment(services["clickhouse"])
    [source] = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert source["editable"] is False
    data = source["jsonData"]
    assert data["host"] in services and data["host"] == "clickhouse"
    assert data["protocol"] == "native" and data["port"] == 9000
    assert data["defaultDatabase"] == clickhouse["CLICKHOUSE_DB"] == Settings().clickhouse_database
    # The same user and password as ClickHouse (and Driftway's DSN), from the environment.
    assert _grafana_expand(data["username"], grafana) == clickhouse["CLICKHOUSE_USER"]
    password = source["secureJsonData"]["password"]
    assert password.startswith("$"), "the password comes from the environment"
    assert _grafana_expand(password, grafana) == clickhouse["CLICKHOUSE_PASSWORD"]
    # Every query read-only and deduplicated, as `driftway query` runs them.
    from driftway.io.clickhouse import READ_ONLY

    custom = {s["setting"]: s["value"] for s in data["customSettings"]}
    assert custom == {k: str(v) for k, v in READ_ONLY.items()}


def test_dashboard_is_provisioned_from_the_mounted_folder(services):
    [provider] = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"]
    assert provider["type"] == "file"
    assert _mounts(services["grafana"])[provider["options"]["path"]] == "deploy/grafana/dashboards"
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    [source] = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
            assert target["editorType"] == "sql", panel["title"]
            # The plugin's formats: 0 time series (a long frame made wide, one line per
            # label), 1 table.
            assert target["format"] == (0 if panel["type"] == "timeseries" else 1), panel["title"]
    for key in ("id", "title"):
        values = [panel[key] for panel in dashboard["panels"]]
        assert len(values) == len(set(values)), f"panel {key}s must be unique"


def test_dashboard_covers_the_monitoring_tables():
    sql = "\n".join(_dashboard_queries().values())
    tables = set(re.findall(r"\bdriftway\.(\w+)", sql))
    assert tables >= {"predictions", "metrics", "drift_events", "deployments", "dead_letters",
                      "feedback"}
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"quantile({quantile})(latency_ms)" in sql
    for metric in ("'accuracy'", "'log_loss'"):
        assert metric in sql


def _sample_rows(client: Any, db: str) -> None:
    """One or two rows in every table the dashboard reads, inside its time range."""
    now = _NOW
    offsets = {"_topic": "t", "_partition": 0}

    def insert(table: str, rows: list[dict[str, Any]]) -> None:
        columns = [*rows[0], *offsets, "_offset"]
        data = [[*row.values(), *offsets.values(), i] for i, row in enumerate(rows)]
        client.insert(f"{db}.{table}", data, column_names=columns)

    v1, v2 = "a" * 64, "b" * 64
    insert("predictions", [
        {"event_id": f"e{i}", "entity_id": "u", "ts": now, "model": "default", "version": v,
         "prediction": "true", "score": 0.7, "shadow_scores": {}, "explanation": "[]",
         "latency_ms": 1.0 + i, "received_at": now, "predicted_at": now}
        for i, v in enumerate((v1, v1, v2))])
    insert("metrics", [
        {"ts": now, "model": "default", "version": v, "metric": metric, "value": 0.5,
         "window": 1000, "examples": 100}
        for v in (v1, v2) for metric in ("accuracy", "log_loss")])
    insert("deployments", [
        {"ts": now, "model": "default", "version": v2, "champion": v2, "shadows": [v1],
         "action": "promote", "previous": v1, "reason": "challenger won", "by": "learner"}])
    insert("drift_events", [
        {"ts": now, "kind": "data", "detector": "ks", "model": "default", "version": v1,
         "feature": "amount", "statistic": 0.4, "threshold": 0.1, "p_value": 0.001,
         "event_id": "e1", "source": "driftway.served", "source_partition": 0,
         "source_offset": 7, "change_point": 3, "detail": ""}])
    insert("dead_letters", [
        {"ts": now, "processor": "scoring", "source_topic": "driftway.raw",
         "source_partition": 0, "source_offset": 1, "key": None, "error": "invalid RawEvent",
         "payload": "{"}])
    insert("feedback", [
        {"ts": now, "event_id": "e2", "outcome": "unlabelled", "model": "default",
         "version": v1, "waited_s": 600.0}])


def test_dashboard_sql_runs_on_the_monitoring_tables(embedded_settings: Settings):
    """Every panel's and annotation's query, macros expanded as the plugin does, runs on the
    embedded engine against our DDL (in a database of its own) and finds the sample rows."""
    from driftway.io.clickhouse import connect, ensure_schema, run_query

    db = "grafana_dashboard"
    client = connect(embedded_settings)
    ensure_schema(client, db)
    _sample_rows(client, db)
    queries = _dashboard_queries()
    assert len(queries) >= 10
    for name, sql in queries.items():
        expanded = _expand_macros(sql).replace("driftway.", f"{db}.")
        assert "$" not in expanded, f"{name}: a macro the test does not know: {expanded}"
        try:
            result = run_query(client, expanded, db)
        except Exception as exc:  # the engine's message says what is wrong with the SQL
            pytest.fail(f"{name} fails on ClickHouse: {exc}\n{expanded}")
        assert result.rows, f"{name} finds none of the sample rows:\n{expanded}"


# --- Kubernetes (deploy/k8s) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every manifest file's documents, by file name."""
    found = {path.name: [d for d in yaml.safe_load_all(path.read_text()) if d]
             for path in sorted(K8S.glob("*.yaml"))}
    assert found, "no manifests in deploy/k8s"
    return found


@pytest.fixture(scope="module")
def resources(manifests) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object, by (kind, name)."""
    objects = {}
    for docs in manifests.values():
        for doc in docs:
            if doc["kind"] == "Kustomization":
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects


def _one(resources, kind: str) -> dict[str, Any]:
    [found] = [doc for (k, _), doc in resources.items() if k == kind]
    return found


def _workloads(resources) -> dict[str, dict[str, Any]]:
    return {name: doc for (kind, name), doc in resources.items()
            if kind in ("Deployment", "StatefulSet", "Job")}


def _containers(resources) -> list[tuple[str, dict[str, Any]]]:
    """(where, container) of every container and init container of every workload."""
    found = []
    for name, doc in _workloads(resources).items():
        pod = doc["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            found.append((f"{name}/{container['name']}", container))
    return found


def _deployment_of(resources, command: list[str]) -> dict[str, Any]:
    [found] = [doc for doc in _workloads(resources).values() if doc["kind"] != "Job"
               and doc["spec"]["template"]["spec"]["containers"][0]["command"] == command]
    return found


def test_manifests_are_namespace_agnostic_and_all_in_the_kustomization(manifests, resources):
    [kustomization] = manifests["kustomization.yaml"]
    assert sorted(kustomization["resources"]) == sorted(set(manifests) - {"kustomization.yaml"})
    assert "namespace" not in kustomization
    for (kind, name), doc in resources.items():
        assert "namespace" not in doc["metadata"], f"{kind}/{name} names a namespace"


def test_k8s_commands_exist_in_the_cli(resources):
    for where, container in _containers(resources):
        _assert_cli_command(where, container["command"])


def test_every_driftway_process_runs_in_k8s(resources):
    from driftway.app.supervisor import PROCESSES

    for args in PROCESSES.values():
        _deployment_of(resources, ["driftway", *args])  # exactly one Deployment each
    [job] = [doc for doc in _workloads(resources).values() if doc["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["driftway", "topics"]


def test_learner_is_one_and_never_two(resources):
    learner = _deployment_of(resources, ["driftway", "run", "learner"])
    assert learner["spec"]["replicas"] == 1
    if learner["kind"] == "Deployment":
        assert learner["spec"]["strategy"]["type"] == "Recreate"
    drift = _deployment_of(resources, ["driftway", "run", "drift"])
    assert drift["spec"]["replicas"] == 1
    assert drift["spec"]["strategy"]["type"] == "Recreate"
    autoscaled = {doc["spec"]["scaleTargetRef"]["name"] for (kind, _), doc in resources.items()
                  if kind == "HorizontalPodAutoscaler"}
    assert learner["metadata"]["name"] not in autoscaled
    assert drift["metadata"]["name"] not in autoscaled


def test_scoring_scales_within_the_partitions(resources):
    scoring = _deployment_of(resources, ["driftway", "run", "scoring"])
    assert scoring["spec"]["replicas"] > 1
    partitions = int(_one(resources, "ConfigMap")["data"]["DRIFTWAY_KAFKA__PARTITIONS"])
    assert scoring["spec"]["replicas"] <= partitions
    for (kind, _), doc in resources.items():
        if kind == "HorizontalPodAutoscaler":
            assert doc["spec"]["scaleTargetRef"]["name"] == scoring["metadata"]["name"]
            assert 1 < doc["spec"]["minReplicas"] <= doc["spec"]["maxReplicas"] <= partitions


def test_pods_take_settings_from_the_configmap_and_secrets_from_the_secret(resources):
    config, secret = _one(resources, "ConfigMap"), _one(resources, "Secret")
    assert secret["type"] == "Opaque" and "data" not in secret
    names = setting_env_names()
    unknown = (set(config["data"]) | set(secret["stringData"])) - names
    assert not unknown, f"not Driftway settings: {sorted(unknown)}"
    assert not set(config["data"]) & SECRET_SETTINGS, "secrets belong in the Secret"
    assert set(secret["stringData"]) <= SECRET_SETTINGS, "only secrets in the Secret"
    assert {"DRIFTWAY_CLICKHOUSE_DSN", "DRIFTWAY_SIGNING_KEY"} <= set(secret["stringData"])
    for where, container in _containers(resources):
        sources = {(next(iter(ref)), ref[next(iter(ref))]["name"])
                   for ref in container["envFrom"]}
        assert sources == {("configMapRef", config["metadata"]["name"]),
                           ("secretRef", secret["metadata"]["name"])}, where
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("PYTHONHASHSEED") == "0", where
        assert set(env) - names <= OTHER_ENV, f"{where}: not settings: {set(env) - names}"
        assert not set(env) & SECRET_SETTINGS, f"{where}: a secret in plain env"
        resources_ = container["resources"]
        assert resources_["requests"]["cpu"] and resources_["requests"]["memory"], where
        assert resources_["limits"]["memory"], where
        assert container["image"].split(":")[0].endswith("driftway"), where


def test_configmap_and_secret_build_valid_settings(resources, monkeypatch):
    config, secret = _one(resources, "ConfigMap"), _one(resources, "Secret")
    for key in setting_env_names():
        monkeypatch.delenv(key, raising=False)
    for key, value in {**config["data"], **secret["stringData"]}.items():
        monkeypatch.setenv(key, str(value))
    settings = load_settings()
    assert settings.kafka.local_broker is False
    assert not settings.embedded_clickhouse
    assert settings.signing_key is not None
    assert settings.kafka.uses_sasl == ("DRIFTWAY_KAFKA__SASL_PASSWORD" in secret["stringData"])


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
    packages = set(pyproject["tool"]["setuptools"]["package-dir"].values())  # folders of code
    assert packages <= copied, f"packages not copied: {sorted(packages - copied)}"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    missing = sorted(s for s in copied if not (ROOT / s).exists())
    assert not missing, f"COPY sources missing from the repository: {missing}"


# --- deploy/clickhouse: the read-only user of the query path ------------------------------------


def _reader_xml() -> tuple[Any, Any]:
    """(profile, user) elements of the read-only user in users.d/driftway-reader.xml."""
    import xml.etree.ElementTree as ET

    root = ET.parse(READER_XML).getroot()
    return root.find("profiles/driftway_reader"), root.find("users/driftway_reader")


#: The profile's settings: read-only, FINAL, and Driftway's default query limits.
def _expected_profile() -> dict[str, str]:
    from driftway.settings import QuerySettings

    limits = QuerySettings()
    return {"readonly": "1", "final": "1", "allow_ddl": "0", "allow_introspection_functions": "0",
            "max_execution_time": f"{limits.max_seconds:g}", "timeout_overflow_mode": "throw",
            "max_memory_usage": str(limits.max_memory_bytes),
            "max_result_rows": str(limits.max_rows), "result_overflow_mode": "throw"}


def test_reader_user_may_select_from_the_monitoring_database_only():
    profile, user = _reader_xml()
    grants = [q.text.strip() for q in user.findall("grants/query")]
    assert grants == [f"GRANT SELECT ON {Settings().clickhouse_database}.*"]
    assert user.find("access_management").text == "0"
    assert user.find("profile").text == "driftway_reader"
    password = user.find("password")
    assert password.get("from_env") == "CLICKHOUSE_READER_PASSWORD" and not password.text
    settings = {e.tag: e.text for e in profile if e.tag != "constraints"}
    assert settings == _expected_profile()
    # The client may lower each limit in readonly=1 mode, never raise it.
    for name in ("max_execution_time", "max_memory_usage", "max_result_rows"):
        constraint = profile.find(f"constraints/{name}")
        assert constraint.find("max").text == settings[name], name
        assert constraint.find("changeable_in_readonly") is not None, name
    config = (CLICKHOUSE / "config.d" / "driftway.xml").read_text()
    assert ("<settings_constraints_replace_previous>true</settings_constraints_replace_previous>"
            in config)


def test_reader_sql_creates_the_same_user():
    sql = re.sub(r"--[^\n]*", "", READER_SQL.read_text())
    [profile] = re.findall(r"CREATE SETTINGS PROFILE IF NOT EXISTS driftway_reader SETTINGS(.*?);",
                           sql, re.S)
    values = {}
    for item in profile.split(","):
        name, _, rest = item.strip().partition(" = ")
        value, *constraint = rest.split(" ", 1)
        values[name] = value.strip("'")
        if constraint:  # a limit: lowered by the client, never raised
            assert re.fullmatch(rf"MIN \S+ MAX {re.escape(value)} CHANGEABLE_IN_READONLY",
                                constraint[0].strip()), item
    assert values == _expected_profile()
    assert re.search(r"CREATE USER IF NOT EXISTS driftway_reader .*SETTINGS PROFILE "
                     r"'driftway_reader';", sql, re.S)
    grants = re.findall(r"GRANT [^;]*;", sql)
    assert grants == [f"GRANT SELECT ON {Settings().clickhouse_database}.* TO driftway_reader;"]


def test_queries_log_in_as_the_reader_in_compose_and_k8s(compose, services, resources):
    clickhouse = services["clickhouse"]
    env = _environment(clickhouse)
    assert re.fullmatch(r"\$\{CLICKHOUSE_READER_PASSWORD:\?[^}]*\}",
                        env["CLICKHOUSE_READER_PASSWORD"])
    mounts = _mounts(clickhouse)
    assert mounts["/etc/clickhouse-server/users.d/driftway-reader.xml"] == (
        "deploy/clickhouse/users.d/driftway-reader.xml")
    assert mounts["/etc/clickhouse-server/config.d/driftway.xml"] == (
        "deploy/clickhouse/config.d/driftway.xml")
    reader = compose["x-driftway-env"]["DRIFTWAY_QUERY__CLICKHOUSE_DSN"]
    assert reader == "http://driftway_reader:${CLICKHOUSE_READER_PASSWORD}@clickhouse:8123"
    secret = _one(resources, "Secret")["stringData"]
    assert secret["DRIFTWAY_QUERY__CLICKHOUSE_DSN"].startswith("https://driftway_reader:")
