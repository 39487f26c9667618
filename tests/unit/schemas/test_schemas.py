from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import msgspec
import pytest
from pydantic import ValidationError

from driftway.schemas.events import (
    InvalidRecord,
    Label,
    Output,
    RawEvent,
    Served,
    Struct,
    label_text,
)
from driftway.schemas.export import JSON_DIR, rendered_schemas
from driftway.schemas.topology import TOPIC_KEYS, TOPIC_RECORDS, TOPICS, topic_specs
from driftway.settings import Settings


def test_raw_event_accepts_iso_and_epoch_millis() -> None:
    iso = RawEvent.model_validate({"event_id": "a", "entity_id": "b",
                                   "ts": "2026-01-01T00:00:01Z", "data": {}})
    millis = RawEvent.model_validate({"event_id": "a", "entity_id": "b",
                                      "ts": 1767225601000, "data": {}})
    assert iso.ts == millis.ts
    # Small numbers are still milliseconds, not seconds.
    assert RawEvent(event_id="a", entity_id="b", ts=1500).ts.timestamp() == 1.5


@pytest.mark.parametrize("payload", [
    b"not json",
    b'{"entity_id": "b", "ts": 1, "data": {}}',
    b'{"event_id": "", "entity_id": "b", "ts": 1, "data": {}}',
    b'{"event_id": "a", "entity_id": "b", "ts": "noon", "data": {}}',
    b'{"event_id": "a", "entity_id": "b", "ts": 1, "data": {"nested": {"x": 1}}}',
    b'{"event_id": "a", "entity_id": "b", "ts": 1, "data": {}, "extra": 1}',
    b'{"event_id": "a", "entity_id": "b", "ts": true, "data": {}}',
])
def test_raw_event_rejects_malformed(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        RawEvent.model_validate_json(payload)


def test_label_values_and_their_canonical_text() -> None:
    assert Label.model_validate_json(b'{"event_id": "e", "label": true}').label is True
    assert Label.model_validate_json(b'{"event_id": "e", "label": 2.5}').label == 2.5
    assert [label_text(v) for v in (True, False, 3, "cat", None)] == ["true", "false", "3",
                                                                       "cat", ""]


def test_every_topic_has_a_versioned_wire_format() -> None:
    # All but the processors' own changelogs (state, not a wire format anyone else reads).
    internal = {t.key for t in TOPICS if t.key.endswith("-state")}
    assert set(TOPIC_RECORDS) == set(TOPIC_KEYS) - internal and internal
    for record in TOPIC_RECORDS.values():
        if isinstance(record, type) and issubclass(record, Struct):
            field = next(f for f in msgspec.structs.fields(record) if f.name == "schema_version")
            assert field.default == 1
        else:
            assert record.model_fields["schema_version"].default == 1


def test_published_json_schemas_are_current() -> None:
    rendered = rendered_schemas()
    on_disk = {p.name: p.read_text() for p in JSON_DIR.glob("*.schema.json")}
    assert on_disk == rendered, "run `driftway schemas export` and commit schemas/json/"


def test_json_schema_validates_like_the_model() -> None:
    schema = json.loads((JSON_DIR / "raw.schema.json").read_text())
    good = {"event_id": "e", "entity_id": "u", "ts": "2026-01-01T00:00:00Z", "data": {"a": 1}}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"event_id": "e", "data": {}}, schema)


def test_json_schemas_of_internal_records_validate_what_the_processors_write() -> None:
    served = Served(event_id="e", entity_id="u", ts=datetime.now(UTC), model="m", champion="v",
                    features={"x": 1.5}, predicted_at=1.0,
                    outputs={"v": Output(prediction=True, score=0.7,
                                         proba={"true": 0.7, "false": 0.3})})
    schema = json.loads((JSON_DIR / "served.schema.json").read_text())
    written = json.loads(served.to_bytes())
    jsonschema.validate(written, schema)
    assert Served.from_bytes(served.to_bytes()) == served
    for bad in ({**written, "extra": 1}, {**written, "features": {"x": "high"}},
                {k: v for k, v in written.items() if k != "champion"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(InvalidRecord, match="invalid Served"):
            Served.from_bytes(json.dumps(bad).encode())


def test_topic_settings_are_defined_once_per_topic() -> None:
    specs = {s.key: s for s in topic_specs(Settings(topic_prefix="p."))}
    assert set(specs) == set(TOPIC_KEYS)
    assert specs["training"].partitions == 1
    assert specs["raw"].partitions == Settings().kafka.partitions
    assert specs["deployments"].config["cleanup.policy"] == "compact"
    assert specs["model-versions"].config["cleanup.policy"] == "compact"
    assert all(s.name.startswith("p.") for s in specs.values())
