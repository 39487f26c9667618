"""Driftway's one settings object, built once at the edge (the CLI) and passed in.

Every field can be set from the environment with the ``DRIFTWAY_`` prefix; nested groups use a
double underscore, e.g. ``DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS=broker:9092``.

>>> s = Settings(state_dir="/tmp/x")
>>> s.topic("raw")
'driftway.raw'
>>> s.clickhouse_dsn_resolved
'chdb:///tmp/x/clickhouse'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftway.schemas.events import MAX_FIELDS, MAX_ID_LENGTH, MAX_RECORD_BYTES, MAX_STRING_LENGTH
from driftway.schemas.topology import TOPIC_KEYS


def _kafka_env(field: str) -> str:
    """The environment name of a KafkaSettings field, for messages that say what to fix."""
    return f"DRIFTWAY_KAFKA__{field.upper()}"


class KafkaSettings(BaseModel):
    """How to reach Kafka, and the local broker Driftway starts when asked to."""

    # hide_input_in_errors: a validation error must not echo the SASL password it was given.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated host:port."
    )
    local_broker: bool = Field(
        True,
        description="Start the project's own single-node KRaft broker (`driftway up`, `demo`). "
        "Set false to use an existing cluster at bootstrap_servers.",
    )
    controller_port: int = Field(
        9093, ge=1, le=65535, description="KRaft controller port of the local broker."
    )
    broker_heap: str = Field("512m", description="Max Java heap of the local broker (-Xmx).")
    partitions: int = Field(
        3, ge=1, le=1000, description="Partitions of the keyed data topics (raw, features...)."
    )
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")

    # Security: confluent-kafka (driftway.io.kafka.client_config) and faust
    # (driftway.io.agents.make_app) both take these, so every client of a process connects the
    # same way.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over "
        "TLS). The local broker speaks PLAINTEXT only.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; required with SASL_PLAINTEXT and SASL_SSL.")
    sasl_username: str | None = Field(
        None, min_length=1, description="SASL user; required with SASL_PLAINTEXT and SASL_SSL.")
    sasl_password: SecretStr | None = Field(
        None, min_length=1, description="SASL password; required with SASL_PLAINTEXT and "
        "SASL_SSL. A secret: never printed.")
    ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA(s) that verify the brokers' certificates "
        "(default: the system's CAs). SSL and SASL_SSL only.")
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate, for brokers that require mutual TLS; "
        "needs ssl_keyfile.")
    ssl_keyfile: Path | None = Field(
        None, description="PEM private key of ssl_certfile (unencrypted).")
    ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host connected to. "
        "The certificate is verified against the CAs either way.")

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _file_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is not None and not v.is_file():
            env = _kafka_env(str(info.field_name))
            raise ValueError(f"no file at {str(v)!r}; set {env} to a readable PEM file")
        return None if v is None else v.resolve()

    @model_validator(mode="after")
    def _security_combination(self) -> KafkaSettings:
        protocol = self.security_protocol
        sasl = {"sasl_mechanism": self.sasl_mechanism, "sasl_username": self.sasl_username,
                "sasl_password": self.sasl_password}
        tls = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile,
               "ssl_keyfile": self.ssl_keyfile}
        if self.uses_sasl:
            missing = [_kafka_env(name) for name, value in sasl.items() if value is None]
            if missing:
                raise ValueError(f"security_protocol {protocol} needs {', '.join(missing)}")
        else:
            given = [_kafka_env(name) for name, value in sasl.items() if value is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} set but DRIFTWAY_KAFKA__SECURITY_PROTOCOL is "
                    f"{protocol}: set it to SASL_SSL (or SASL_PLAINTEXT), or unset them")
        if not self.uses_tls:
            given = [_kafka_env(name) for name, value in tls.items() if value is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} set but DRIFTWAY_KAFKA__SECURITY_PROTOCOL is "
                    f"{protocol}: set it to SSL (or SASL_SSL), or unset them")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("a client certificate needs its key: set both "
                             "DRIFTWAY_KAFKA__SSL_CERTFILE and DRIFTWAY_KAFKA__SSL_KEYFILE")
        return self

    @property
    def uses_sasl(self) -> bool:
        """True when clients authenticate with SASL (SASL_PLAINTEXT, SASL_SSL)."""
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """True when connections are encrypted with TLS (SSL, SASL_SSL)."""
        return self.security_protocol.endswith("SSL")

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(
                    f"{part!r} is not host:port; set DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS "
                    "like 127.0.0.1:9092"
                )
        return v

    @property
    def broker_port(self) -> int:
        """Port of the first bootstrap server: where the local broker listens."""
        return int(self.bootstrap_servers.split(",")[0].rpartition(":")[2])


def _http_only(v: SecretStr | None, name: str) -> SecretStr | None:
    """A secret URL setting that must be http(s), or unset."""
    if v is not None and not v.get_secret_value().startswith(("http://", "https://")):
        raise ValueError(f"{name} must start with http:// or https://")
    return v


class ProcessingSettings(BaseModel):
    """Batching and serving knobs of the stream processors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(500, ge=1, le=100_000, description="Events taken per batch.")
    batch_within: float = Field(
        0.02, gt=0, le=10, description="Seconds to wait for a batch to fill before processing it."
    )
    commit_interval: float = Field(
        0.05, gt=0, le=60, description="Seconds between two transaction commits of a processor "
        "on the runtime: output becomes visible to read_committed readers at a commit, so this "
        "bounds their latency; shorter costs the broker more commits.")
    commit_min_interval: float = Field(
        0.01, gt=0, le=60, description="A transaction whose input has gone quiet commits once "
        "it has been open this long, without waiting for commit_interval: at low and moderate "
        "rates output is visible within milliseconds, and each processor commits at most "
        "1/commit_min_interval times a second; under load (input never quiet) commits come "
        "every commit_interval. The sink commits at sink.flush_seconds only.")
    commit_idle_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds a transaction stays open while it holds nothing "
        "another reader waits for — only input offsets and the processor's own state changelog "
        "(the drift watcher between alarms, feedback while no label comes): its commit shows "
        "nobody anything, so it is not worth a commit every few milliseconds (each costs the "
        "broker several requests). A crash re-reads at most this much input.")
    metrics_log_seconds: float = Field(
        30.0, gt=0, description="Seconds between two metrics lines of a processor on the "
        "runtime (records/s, dead letters, batch and commit times, lag) in its log.")
    retry_first_seconds: float = Field(
        0.5, gt=0, le=60, description="A processor whose store outside Kafka is unavailable "
        "(the sink's ClickHouse unreachable or refusing inserts) holds its input back and tries "
        "again after this many seconds, doubling each time up to retry_longest_seconds; it "
        "never drops or skips a record meanwhile, and the live status says it is waiting.")
    retry_longest_seconds: float = Field(
        30.0, gt=0, le=3600, description="The longest wait between two tries of a processor "
        "waiting for its store (see retry_first_seconds).")
    transaction_timeout_ms: int = Field(
        10_000, ge=1_000, le=900_000, description="How long the broker keeps a transaction of a "
        "crashed processor open before aborting it (read_committed readers of its partitions "
        "wait that long, unless the processor restarts under the same instance name first).")
    model: str = Field(
        "logistic_regression",
        description="The model the learner trains: a name from driftway.logic.models.MODELS "
        "(logistic_regression, hoeffding_tree, adaptive_random_forest, linear_regression), an "
        "import path 'package.module:factory', or a River expression such as "
        "'preprocessing.StandardScaler() | linear_model.LogisticRegression()'.",
    )
    max_categories: int = Field(
        100, ge=0, description="Distinct values of each string field a fresh model learns as "
        "features of their own (field=value), the first it meets in the training order; later "
        "values share one feature, field=<other>. Bounds the model against ids sent as data. "
        "0: no cap.")
    max_features: int = Field(
        1_000, ge=0, description="Distinct feature names a fresh model learns in all (numbers, "
        "categories and <other> buckets); features with further names are left out, in learning "
        "and serving alike. 0: no cap.")
    model_name: str = Field(
        "default", pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name of the served model in predictions, versions and deployments.")
    explain_top: int = Field(3, ge=0, le=50, description="Feature contributions per prediction.")
    publish_every: int = Field(
        1_000, ge=1, description="Learned examples between two published model versions."
    )
    live_updates: bool = Field(
        True,
        description="Stream each deployed line's model state from the learner to scoring "
        "after each of the learner's batches (the model-updates topic), so what is served "
        "follows what was learned within milliseconds, not only at published versions. False: "
        "scoring serves published versions only.")
    live_update_seconds: float = Field(
        0.0, ge=0, le=3600,
        description="Least seconds between two live updates of a model. The learner also "
        "waits at least 10 times as long as serialising the last one took, so a heavy model "
        "(a forest of several MB) is sent less often instead of slowing learning down.")
    auto_update: bool = Field(
        True,
        description="Deploy each newly published version of a deployed line in its place "
        "(champion or shadow), so serving follows learning. False: versions are only published; "
        "deploy them with `driftway models deploy`.",
    )
    metrics_window: int = Field(
        1_000, ge=10, description="Sliding window (labelled examples) of prequential metrics."
    )
    metrics_every: int = Field(
        500, ge=1, description="Labelled examples per version between two metric records."
    )
    feedback_window_seconds: float = Field(
        600.0,
        gt=0,
        description="How long a served event waits for its label (and an early label for its "
        "prediction) in the feedback join; later ones are recorded in the feedback table.",
    )
    feedback_max_pending: int = Field(
        1_000_000, ge=1, description="Bound on entries waiting in the feedback join."
    )
    artifact_chunk_bytes: int = Field(
        512 * 1024,
        ge=1024,
        le=8 * 1024 * 1024,
        description="Model artifacts larger than this travel in several Kafka messages.",
    )


class LimitsSettings(BaseModel):
    """Bounds on what a raw event or a label may hold where it enters Driftway (the features and
    feedback processors, driftway.logic.limits): a record over one is a dead letter naming the
    limit, not a crash. The published JSON Schemas show the defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_record_bytes: int = Field(
        MAX_RECORD_BYTES, ge=1, description="Bytes of one raw event or label, checked before it "
        "is parsed. The broker's own default bound on a message is about 1 MB too.")
    max_fields: int = Field(
        MAX_FIELDS, ge=0, description="Fields (keys) in a raw event's data.")
    max_string_length: int = Field(
        MAX_STRING_LENGTH, ge=0, description="Characters of any text value in a raw event's "
        "data, of any field name there, and of a label given as text.")
    max_id_length: int = Field(
        MAX_ID_LENGTH, ge=1, description="Characters of an event_id or entity_id (raw events "
        "and labels).")


class DriftSettings(BaseModel):
    """Drift detection: data and prediction drift on what scoring served, concept drift on each
    version's prequential errors (in the learner)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_window: int = Field(
        1_000, ge=50, description="First reference of each feature's sequential tests (it then "
        "grows with older values, up to 16 times this).")
    data_warmup: int = Field(
        1_000, ge=0, description="Events skipped before the reference window fills (start-up "
        "transients, such as every entity being new, are not the reference).")
    data_batch: int = Field(
        16, ge=1, description="Events buffered between two runs of the sequential (CUSUM) tests.")
    prediction_warmup: int = Field(
        2_000, ge=0, description="Events of one champion skipped before its prediction-drift "
        "reference starts (a champion still learning its first concept changes its answers).")
    ignore_features: list[str] = Field(
        default_factory=lambda: ["entity.*"],
        description="Features not watched for data drift (shell patterns). entity.events counts "
        "each entity's events and entity.seconds_since_last moves as the share of new entities "
        "falls: non-stationary by construction. Numeric features whose reference trends (a "
        "timestamp sent as a number) are recognised and not watched either.")
    false_alarms_per_100k: float = Field(
        1.0, gt=0, description="False-alarm budget of data and prediction drift: expected "
        "false alarms per 100,000 events over all features together.")
    concept_detector: str = Field(
        "adwin", description="River detector on each version's error stream: adwin, kswin, "
        "page_hinkley, ddm, eddm, hddm_a, hddm_w.")
    concept_params: dict[str, float | int] = Field(
        default_factory=dict, description="Parameters of the concept detector (River's names), "
        'e.g. {"delta": 0.002}.')
    concept_warmup: int = Field(
        200, ge=0, description="Labels a version must have before its detector may alarm.")
    concept_cooldown: int = Field(
        1_000, ge=0, description="Labels after an alarm before the same detector alarms again.")
    per_model: dict[str, dict[str, float | int | str | dict[str, float | int]]] = Field(
        default_factory=dict,
        description="Overrides of these settings by model name, e.g. "
        '{"fraud": {"concept_detector": "ddm", "false_alarms_per_100k": 0.5}}.')

    def for_model(self, model: str) -> DriftSettings:
        """These settings with the overrides for `model` applied."""
        override = self.per_model.get(model)
        return self.model_copy(update=override) if override else self


class PolicySettings(BaseModel):
    """What the learner does about concept drift on a champion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Start challengers, promote and roll back.")
    challenger: Literal["change_point", "fresh"] = Field(
        "change_point", description="A challenger is a fresh model trained on the examples "
        "since the estimated change point (change_point), or a fresh model alone (fresh).")
    challenger_buffer: int = Field(
        5_000, ge=0, description="Recent labelled examples kept to train a challenger from the "
        "change point.")
    alpha: float = Field(
        0.01, gt=0, lt=0.5, description="Error rate of promotion and of rollback: the chance "
        "that a challenger no better than the champion is promoted (or a promoted version no "
        "worse than its predecessor rolled back), however often the sequential test is read.")
    min_labels: int = Field(
        100, ge=10, description="Paired labels before the promotion / rollback test may "
        "decide (it is read after every label from then on, at level alpha throughout).")
    max_labels: int = Field(
        4_000, ge=10, description="Paired labels before a challenger not found better is "
        "dropped, or a predecessor not found better retired.")


class SinkSettings(BaseModel):
    """The ClickHouse sink."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(5_000, ge=1, description="Max records per ClickHouse insert.")
    flush_seconds: float = Field(0.5, gt=0, description="Max seconds a record waits for insert.")
    ttl_days: int = Field(
        0, ge=0, description="Days the monitoring tables keep a row (by insertion time); "
        "0 keeps everything. Applied at start-up, also to existing tables.")
    rollup_ttl_days: int = Field(
        0, ge=0, description="Days the per-minute rollups keep a row; 0 keeps everything.")


class QuerySettings(BaseModel):
    """User queries (`driftway query`, the report, status): each runs read-only, on the
    monitoring database only, within these limits (ClickHouse stops it when one is reached)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_seconds: float = Field(
        60.0, gt=0, description="Longest a query may run (ClickHouse max_execution_time).")
    max_memory_bytes: int = Field(
        2 * 1024**3, ge=1024**2,
        description="Most memory a query may use (ClickHouse max_memory_usage; default 2 GiB).")
    max_rows: int = Field(
        1_000_000, ge=1, description="Most rows a query may return (ClickHouse max_result_rows, "
        "refused rather than cut short when exceeded).")
    clickhouse_dsn: SecretStr | None = Field(
        None, description="On a ClickHouse server: the DSN user queries connect with, as the "
        "read-only user of deploy/clickhouse/ (http(s)://driftway_reader:password@host:port). "
        "Default: clickhouse_dsn. Unused on the embedded engine.")

    @field_validator("clickhouse_dsn")
    @classmethod
    def _server(cls, v: SecretStr | None) -> SecretStr | None:
        return _http_only(v, "DRIFTWAY_QUERY__CLICKHOUSE_DSN")


class RegistrySettings(BaseModel):
    """The registry's retention rule: which versions keep their artifacts on the compacted
    artifacts topic (driftway.logic.registry.kept). Metadata and lineage are always kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prune: bool = Field(
        True, description="The sink prunes (tombstones) the artifact chunks of every version "
        "that is none of: the champion, a shadow or the previous champion (the rollback "
        "target) of its model's current deployment; the latest published descendant of a "
        "deployed version; named by a prediction stored in ClickHouse (its version, "
        "state_version or a shadow score: reproducing it needs that artifact; kept until "
        "sink.ttl_days expires the prediction, for ever with 0); published, superseded or "
        "deployed within prune_grace_seconds. A version's metadata and lineage are never "
        "pruned; deploying or rolling back to a pruned version is refused. False keeps every "
        "artifact.")
    prune_every_seconds: float = Field(
        600.0, gt=0, description="Seconds between two rounds of the retention rule in the sink.")
    prune_grace_seconds: float = Field(
        3600.0, ge=0, description="A version published, superseded by a child or deployed "
        "this recently keeps its artifact: its predictions may not be stored yet. The sink "
        "also waits this long after it starts before its first round, to catch up on the "
        "predictions it missed while it was down.")


class AlertSettings(BaseModel):
    """The alerts agent (faust-streaming): drift alarms counted per model in tumbling windows."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    enabled: bool = Field(
        False, description="Run the alerts agent in `driftway up` and the demo (it can always "
        "run alone: `driftway run alerts`).")
    window_seconds: float = Field(
        3600.0, gt=0, le=7 * 24 * 3600, description="Length of the tumbling window in which a "
        "model's drift alarms are counted.")
    threshold: int = Field(
        3, ge=1, description="Drift alarms on one model within one window that raise an alert "
        "(once per window).")
    webhook_url: SecretStr | None = Field(
        None, description="Where each alert is POSTed as JSON (http or https; a secret: "
        "webhook URLs carry tokens). Unset: alerts are logged only.")

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, v: SecretStr | None) -> SecretStr | None:
        return _http_only(v, "alerts.webhook_url")


class Settings(BaseSettings):
    """All of Driftway's settings. Frozen: build once, pass in."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTWAY_", env_nested_delimiter="__", frozen=True, extra="forbid",
        hide_input_in_errors=True,  # errors must not echo a DSN or a password
    )

    state_dir: Path = Field(
        Path(".driftway"), description="Where the local broker and embedded ClickHouse keep data."
    )
    topic_prefix: str = Field("driftway.", description="Prefix of every Driftway topic name.")
    app_id: str = Field("driftway", description="Prefix of consumer groups and faust app ids.")
    clickhouse_dsn: SecretStr | None = Field(
        None,
        description="chdb:///path (embedded engine, default under state_dir) or "
        "http(s)://user:password@host:8123 for a ClickHouse server. A secret: never printed.",
    )
    clickhouse_database: str = Field("driftway", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    kafka_libs_dir: Path | None = Field(
        None, description="Where the local broker's jars live (default: deploy/kafka/libs of the "
        "checkout, where `make install` puts them)."
    )
    signing_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="HMAC-SHA256 key that signs model artifacts (a secret: never printed). "
        "Default: a random key that the first process needing one creates in "
        "<state_dir>/signing.key, fine for one machine; set it explicitly (same value "
        "everywhere) when processes run on several.",
    )
    log_level: Literal["debug", "info", "warn", "error"] = "warn"
    kafka: KafkaSettings = KafkaSettings()
    processing: ProcessingSettings = ProcessingSettings()
    drift: DriftSettings = DriftSettings()
    policy: PolicySettings = PolicySettings()
    sink: SinkSettings = SinkSettings()
    query: QuerySettings = QuerySettings()
    registry: RegistrySettings = RegistrySettings()
    alerts: AlertSettings = AlertSettings()
    limits: LimitsSettings = LimitsSettings()

    @field_validator("topic_prefix")
    @classmethod
    def _topic_chars(cls, v: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(v) <= allowed:
            raise ValueError("topic_prefix may hold only letters, digits, '.', '_' and '-'")
        return v

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("chdb://", "http://", "https://")):
            raise ValueError(
                "DRIFTWAY_CLICKHOUSE_DSN must start with chdb://, http:// or https://"
            )
        return v

    def topic(self, key: str) -> str:
        """Full topic name of a topic of the topology (driftway.schemas.topology)."""
        if key not in TOPIC_KEYS:
            raise KeyError(f"unknown topic {key!r}; known: {', '.join(TOPIC_KEYS)}")
        return f"{self.topic_prefix}{key}"

    @property
    def clickhouse_dsn_resolved(self) -> str:
        """The DSN to connect with: the configured one, or chDB under the state directory."""
        if self.clickhouse_dsn is not None:
            return self.clickhouse_dsn.get_secret_value()
        return f"chdb://{(self.state_dir / 'clickhouse').resolve()}"

    @property
    def embedded_clickhouse(self) -> bool:
        """True when ClickHouse is the in-process chDB engine (one owning process)."""
        return self.clickhouse_dsn_resolved.startswith("chdb://")

    @property
    def signing_key_bytes(self) -> bytes:
        """The artifact signing key. Reading settings does no I/O: a process that signs or
        verifies artifacts gets its key at start-up (driftway.io.keys.with_signing_key)."""
        if self.signing_key is None:
            raise SettingsError(
                "no artifact signing key: set DRIFTWAY_SIGNING_KEY, or let the process that "
                "needs it create this state directory's own at start-up "
                "(driftway.io.keys.with_signing_key)")
        return self.signing_key.get_secret_value().encode()


class SettingsError(Exception):
    """Settings that cannot work; the message says what to fix."""


def setting_env_names(model: type[BaseModel] = Settings, prefix: str = "DRIFTWAY_") -> set[str]:
    """Every environment name that sets a field (nested groups also as one JSON value).

    >>> "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS" in setting_env_names()
    True
    """
    names: set[str] = set()
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        names.add(env)
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= setting_env_names(kind, env + "__")
    return names


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus overrides, with an error that says what to fix.

    >>> load_settings(topic_prefix="bad prefix!")
    Traceback (most recent call last):
    ...
    driftway.settings.SettingsError: invalid setting topic_prefix (DRIFTWAY_TOPIC_PREFIX): ...
    """
    unknown = sorted(k for k in os.environ if k.startswith("DRIFTWAY_")
                     and k not in setting_env_names())
    if unknown:
        raise SettingsError(
            f"unknown setting(s) in the environment: {', '.join(unknown)}; the settings are "
            f"{', '.join(sorted(setting_env_names()))}")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"])
            env = "DRIFTWAY_" + "__".join(str(p) for p in err["loc"]).upper()
            lines.append(f"invalid setting {path} ({env}): {err['msg']}")
        raise SettingsError("\n".join(lines)) from None
