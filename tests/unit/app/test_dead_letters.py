"""`driftway dead-letters`: the re-validation a replay applies, and its options (no broker)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from driftway.app.cli import cli
from driftway.app.dead_letters import current_checks, topic_name
from driftway.logic.dead_letters import failure
from driftway.schemas.events import DeadLetter
from driftway.settings import LimitsSettings, ProcessingSettings, Settings

RAW_OK = b'{"event_id": "e1", "entity_id": "u1", "ts": 1, "data": {"city": "Oslo"}}'


def check(settings: Settings, topic: str, value: bytes, key: bytes | None = b"k") -> str | None:
    letter = DeadLetter.of("x", settings.topic(topic), 0, 0, key, value, "before")
    return failure(current_checks(settings)[settings.topic(topic)], letter)


def test_raw_events_are_checked_as_the_features_processor_checks_them() -> None:
    settings = Settings()
    assert check(settings, "raw", RAW_OK) is None
    assert "event_id" in (check(settings, "raw", b'{"entity_id": "u", "ts": 1}') or "")
    assert check(settings, "raw", b"") is not None
    assert "no float can hold" in (check(settings, "raw", RAW_OK.replace(
        b'"Oslo"', b"1" + b"0" * 400)) or "")


def test_raw_events_and_labels_are_checked_with_the_limits_the_settings_name_now() -> None:
    small = Settings(limits=LimitsSettings(max_string_length=3))
    reason = check(small, "raw", RAW_OK) or ""
    assert "over limits.max_string_length 3" in reason
    assert check(Settings(limits=LimitsSettings(max_string_length=4)), "raw", RAW_OK) is None
    assert "max_string_length" in (check(small, "labels",
                                         b'{"event_id": "e1", "label": "true-ish"}') or "")


def test_labels_are_checked_against_the_model_the_settings_name_now() -> None:
    label = b'{"event_id": "e1", "label": "maybe"}'
    binary = Settings()  # logistic regression learns booleans only
    assert "not binary" in (check(binary, "labels", label) or "")
    assert check(binary, "labels", b'{"event_id": "e1", "label": true}') is None
    multiclass = Settings(processing=ProcessingSettings(model="hoeffding_tree"))
    assert check(multiclass, "labels", label) is None


def test_only_the_topics_upstream_apps_write_are_replayable() -> None:
    settings = Settings(topic_prefix="p.")
    assert set(current_checks(settings)) == {"p.raw", "p.labels"}


def test_a_topic_is_named_by_its_key_or_in_full() -> None:
    settings = Settings(topic_prefix="p.")
    assert topic_name(settings, "raw") == "p.raw"
    assert topic_name(settings, "p.raw") == "p.raw"


@pytest.mark.parametrize("command", ["list", "show", "replay"])
def test_each_command_has_help(command: str) -> None:
    done = CliRunner().invoke(cli, ["dead-letters", command, "--help"])
    assert done.exit_code == 0, done.output


def test_a_bad_time_is_refused_before_kafka_is_asked() -> None:
    done = CliRunner().invoke(cli, ["dead-letters", "list", "--since", "yesterday"])
    assert done.exit_code == 2 and "neither an ISO time nor a time ago" in done.output


def test_the_replayable_topics_are_the_upstream_ones_each_checked_by_its_entering_processor(
) -> None:
    from driftway.app.dead_letters import REPLAYABLE
    from driftway.schemas.topology import COMMAND_TOPICS, PROCESSORS, TOPIC_KEYS, topic

    written = {key for p in PROCESSORS for key in p.writes}
    upstream = {key for key in TOPIC_KEYS if key not in written} - set(COMMAND_TOPICS)
    assert set(REPLAYABLE) == upstream
    for key, checker in REPLAYABLE.items():
        readers = [p.name for p in PROCESSORS if key in p.reads]
        assert checker == (topic(key).checked_by or readers[0]) and checker in readers
