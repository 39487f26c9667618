from __future__ import annotations

from pathlib import Path

import pytest

from driftway.schemas.topology import TOPIC_KEYS
from driftway.settings import Settings, SettingsError, load_settings


def test_default_topic_names_are_under_the_driftway_prefix() -> None:
    names = [Settings().topic(k) for k in TOPIC_KEYS]
    assert names == [
        "driftway.raw", "driftway.predictions", "driftway.labels",
        "driftway.served", "driftway.training", "driftway.model-versions",
        "driftway.model-artifacts", "driftway.deployments", "driftway.model-updates",
        "driftway.drift",
        "driftway.metrics", "driftway.dead-letters", "driftway.dead-letter-replays",
        "driftway.feedback", "driftway.experiments", "driftway.health", "driftway.features-state",
        "driftway.feedback-state",
    ]


def test_the_signing_key_is_a_secret_and_never_made_by_reading(tmp_path: Path) -> None:
    explicit = Settings(signing_key="a-long-enough-secret-key")
    assert "a-long-enough" not in repr(explicit) and "a-long-enough" not in str(
        explicit.model_dump())
    assert explicit.signing_key_bytes == b"a-long-enough-secret-key"
    with pytest.raises(SettingsError, match="DRIFTWAY_SIGNING_KEY"):
        Settings(state_dir=tmp_path).signing_key_bytes  # noqa: B018 - reading creates no key
    assert not (tmp_path / "signing.key").exists()


def test_reading_settings_creates_no_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = Settings(state_dir=state)
    for name in dir(settings):  # every field and every property, read once
        if not name.startswith("_") and name not in ("model_fields", "model_computed_fields"):
            try:
                getattr(settings, name)
            except SettingsError:
                pass  # the signing key: none configured, none made
    assert not state.exists()
    with pytest.raises(SettingsError, match="DRIFTWAY_SIGNING_KEY"):
        load_settings(signing_key="short")


def test_environment_overrides_nested_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.5:19092")
    monkeypatch.setenv("DRIFTWAY_PROCESSING__BATCH_SIZE", "64")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "10.0.0.5:19092"
    assert s.processing.batch_size == 64


@pytest.mark.parametrize(("env", "value", "fix"), [
    ("DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS", "nohostport", "DRIFTWAY_KAFKA__BOOTSTRAP_SERVERS"),
    ("DRIFTWAY_PROCESSING__BATCH_SIZE", "0", "DRIFTWAY_PROCESSING__BATCH_SIZE"),
    ("DRIFTWAY_CLICKHOUSE_DSN", "mysql://x", "chdb://, http:// or https://"),
    ("DRIFTWAY_TOPIC_PREFIX", "a b", "DRIFTWAY_TOPIC_PREFIX"),
])
def test_wrong_settings_fail_with_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fix: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert fix in str(err.value)


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match="Extra inputs"):
        load_settings(not_a_setting=1)


def test_dsn_defaults_to_embedded_engine_under_state_dir(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    assert s.embedded_clickhouse
    assert s.clickhouse_dsn_resolved == f"chdb://{tmp_path.resolve()}/clickhouse"
    server = Settings(clickhouse_dsn="http://u:secret@ch:8123")
    assert not server.embedded_clickhouse
    assert "secret" not in repr(server)


def test_misspelt_environment_setting_fails_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTWAY_STATEDIR", "/tmp/x")
    with pytest.raises(SettingsError, match="DRIFTWAY_STATEDIR.*DRIFTWAY_STATE_DIR"):
        load_settings()


def test_input_limits_have_documented_defaults_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from driftway.settings import LimitsSettings

    limits = Settings().limits
    assert (limits.max_record_bytes, limits.max_fields, limits.max_string_length,
            limits.max_id_length) == (1_000_000, 1_000, 1_024, 256)
    assert all(field.description for field in LimitsSettings.model_fields.values())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, field in LimitsSettings.model_fields.items():
        assert f"| DRIFTWAY_LIMITS__{name.upper()} | `{field.default}`" in readme
    monkeypatch.setenv("DRIFTWAY_LIMITS__MAX_STRING_LENGTH", "5000")
    assert load_settings().limits.max_string_length == 5000
