"""Wire formats of every Driftway topic, as pydantic v2 models.

Each record carries ``schema_version`` so consumers can tell formats apart as they evolve. The JSON
Schema files in ``schemas/json/`` are generated from these models (``driftway schemas export``), so
any Kafka client in any language can produce and consume.

>>> e = RawEvent.model_validate_json(b'{"event_id": "e1", "entity_id": "u1", "ts": 1700000000000,'
...                                  b' "data": {"amount": 12.5, "city": "Oslo"}}')
>>> e.ts.isoformat()
'2023-11-14T22:13:20+00:00'
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
FEATURE_SET_VERSION = "fs1"

Scalar = bool | int | float | str | None
LabelValue = bool | int | float | str


def _epoch_millis_or_iso(value: Any) -> Any:
    """Numbers are epoch milliseconds (pydantic alone would guess seconds for small ones)."""
    if isinstance(value, bool):
        raise ValueError("ts must be an ISO-8601 string or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError):
            # The C library raises any of these for a time outside its calendar.
            raise ValueError(f"ts {value!r} (epoch milliseconds) is outside the years "
                             "1-9999") from None
    return value


def _finite_float(value: int | float) -> bool:
    """True when `value` converts to a finite float (features are floats)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, BeforeValidator(_epoch_millis_or_iso)]


class Record(BaseModel):
    """Shared base of every wire record: strict about unknown top-level fields, frozen."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_timedelta="float")

    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        """The record as compact JSON bytes, the form it travels in."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Any:
        """The record in `data` (raises pydantic's ValidationError)."""
        return cls.model_validate_json(data)


class RawEvent(Record):
    """What upstream apps send: one event about one entity, with flat, domain-agnostic data.

    Numbers (and booleans) in ``data`` become numeric features, strings become categorical ones.
    """

    event_id: str = Field(min_length=1, max_length=256)
    entity_id: str = Field(min_length=1, max_length=256)
    ts: Timestamp
    data: dict[str, Scalar] = Field(default_factory=dict)

    @field_validator("ts")
    @classmethod
    def _tz(cls, v: datetime) -> datetime:
        return _aware(v)

    @field_validator("data", mode="before")
    @classmethod
    def _flat(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for name, value in v.items():
                if isinstance(value, dict | list):
                    raise ValueError(
                        f"data.{name} is {'an object' if isinstance(value, dict) else 'a list'}; "
                        "data must be flat: numbers, strings, booleans or null")
                if isinstance(value, int | float) and not isinstance(value, bool) \
                        and not _finite_float(value):
                    raise ValueError(f"data.{name} is a number no float can hold")
        return v


class Label(Record):
    """The truth for an earlier event, when it becomes known. Keyed by event id."""

    event_id: str = Field(min_length=1, max_length=256)
    label: LabelValue
    ts: Timestamp | None = None


class Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Shared base of the per-event internal records (features, served, predictions, training).

    msgspec, not pydantic: each is decoded and encoded several times per event across the
    pipeline, and msgspec does it in a fraction of the time (bench/processors.py). The wire
    format is the same JSON, and the published JSON Schema comes from the same class.
    """

    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        """The record as compact JSON bytes, the form it travels in."""
        return _ENCODE(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Any:
        """The record in `data` (raises InvalidRecord, naming the bad field)."""
        decoder = _DECODERS.get(cls)
        if decoder is None:
            decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
        try:
            return decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidRecord(cls.__name__, exc) from None


#: A time with its zone, as RFC 3339 text on the wire.
Instant = Annotated[datetime, Meta(tz=True, extra_json_schema={"format": "date-time"})]
_ENCODE = msgspec.json.Encoder().encode
_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}


class InvalidRecord(ValueError):
    """Bytes that are not a valid record of one kind (malformed JSON or a wrong field)."""

    def __init__(self, kind: str, cause: Exception) -> None:
        super().__init__(f"invalid {kind}: {cause}")


class FeatureVector(Struct, kw_only=True):
    """Output of the features processor: numeric features ready for a model."""

    event_id: str
    entity_id: str
    ts: Instant
    feature_set: str = FEATURE_SET_VERSION
    features: dict[str, float]
    received_at: Annotated[float, Meta(
        description="Unix seconds when the raw event entered Driftway.")]


class Contribution(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One feature's share of a score (for linear models: weight times scaled value)."""

    feature: str
    value: float
    contribution: float


class Prediction(Struct, kw_only=True):
    """What subscribers read: one model version's answer for one event, with its explanation."""

    event_id: str
    entity_id: str
    ts: Instant
    model: str
    version: str
    prediction: LabelValue | None
    score: Annotated[float | None, Meta(
        description="Probability of the predicted class, or the value.")]
    shadow_scores: dict[str, float] = {}
    explanation: list[Contribution] = []
    latency_ms: Annotated[float, Meta(
        description="Serving latency: features record in to prediction out.")]
    received_at: float
    predicted_at: float
    # The exact model state that answered (DESIGN.md, invariant 7): `state_version`'s artifact
    # plus every training record it learned in [trained_from, trained_through).
    state_version: Annotated[str | None, Meta(
        description="The registry version the serving state descends from (its latest "
        "published ancestor; `version` is the deployed version it serves as).")] = None
    trained_from: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(
        description="Training-topic offset where the state's learning since "
        "state_version began.")] = None
    trained_through: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(
        description="Training-topic offset up to which (exclusive) the state had learned "
        "when it served this prediction.")] = None
    features: Annotated[dict[str, float], Meta(
        description="The features the prediction was computed from.")] = {}


class Output(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What one model version answered for one event."""

    prediction: LabelValue | None
    score: float | None = None
    proba: Annotated[dict[str, float] | None, Meta(
        description="Classifiers: probability per class, keyed by the class as text.")] = None


class Served(Struct, kw_only=True):
    """What scoring served for one event (champion and every shadow), keyed by event id.

    The feedback processor joins it with the event's label; the learner evaluates every version on
    it. Internal topic: subscribers read predictions.
    """

    event_id: str
    entity_id: str
    ts: Instant
    model: str
    champion: str
    features: dict[str, float]
    outputs: Annotated[dict[str, Output], Meta(
        description="By version: the champion's and each shadow's.")]
    predicted_at: float


class TrainingExample(Struct, kw_only=True, tag_field="type", tag="example"):
    """A served event joined with its label: what the learner evaluates and learns from.

    Its ``type`` is ``example`` (a record without one is an example too: schema_version 1).
    """

    event_id: str
    model: str
    version: Annotated[str, Meta(description="The champion that served the event.")]
    features: dict[str, float]
    label: LabelValue
    served: Annotated[LabelValue | None, Meta(description="The champion's prediction.")]
    score: float | None = None
    outputs: Annotated[dict[str, Output], Meta(
        description="Every version's answer (champion and shadows).")] = {}
    predicted_at: float | None = None
    labelled_at: float | None = None


class PublishRequest(Struct, kw_only=True, tag_field="type", tag="publish"):
    """Asks the learner to publish a version of `model` now, at this point of the training order.

    It travels on the training topic, so a replay after a crash publishes at the same point.
    """

    model: str
    reason: str = "requested"
    ts: Instant


TrainingRecord = TrainingExample | PublishRequest
_TRAINING = msgspec.json.Decoder(TrainingRecord)


def decode_training(data: bytes) -> TrainingRecord:
    """A training-topic record: an example or a publish request (raises InvalidRecord)."""
    try:
        return _TRAINING.decode(data)
    except msgspec.ValidationError as exc:
        if "missing required field `type`" in str(exc):  # written before the tag was
            return TrainingExample.from_bytes(data)
        raise InvalidRecord("TrainingRecord", exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidRecord("TrainingRecord", exc) from None


class LineState(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One deployed line's model as the learner has it now: a live update for scoring.

    The state is `version`'s artifact plus every learnable training record in
    [trained_from, trained_through) (``driftway.logic.replay``); `state` is its pickle, signed
    like an artifact (``driftway.logic.artifacts.sign_state``), so it is checked before it is
    unpickled.
    """

    slot: Annotated[str, Meta(description="The deployed version this line serves as.")]
    version: Annotated[str, Meta(
        description="The registry version the state descends from (its latest release).")]
    trained_from: int
    trained_through: int
    examples_seen: int
    state: bytes
    signature: str


class ModelState(Struct, kw_only=True):
    """Every deployed line of one model, as the learner commits it (compacted, keyed by model:
    the topic keeps one record per model). Internal: scoring applies it between two batches."""

    model: str
    lines: list[LineState]
    at: Annotated[float, Meta(description="Unix seconds when the learner wrote it.")]


class TrainingOffsets(BaseModel):
    """The training-topic offsets a version learned from since its parent: [start, end)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    partition: int = 0
    start: int
    end: int


class ModelVersion(Record):
    """An immutable model version: metadata and lineage. The artifact travels in chunks.

    ``version`` is the SHA-256 of the artifact; ``signature`` its HMAC-SHA256 under the signing key.
    """

    model: str
    version: str
    parent: str | None = None
    created_at: datetime
    reason: str = ""
    training_offsets: TrainingOffsets | None = None
    examples_seen: int = 0
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    feature_set: str = FEATURE_SET_VERSION
    libraries: dict[str, str] = Field(default_factory=dict)
    artifact_size: int = 0
    artifact_chunks: int = 0
    signature: str | None = None


class ArtifactChunk(Record):
    """One piece of a model version's artifact (keyed ``model@version/index``)."""

    model: str
    version: str
    index: int = Field(ge=0)
    count: int = Field(ge=1)
    data_b64: str

    @model_validator(mode="after")
    def _index_in_count(self) -> ArtifactChunk:
        if self.index >= self.count:
            raise ValueError(f"chunk index {self.index} is not below its count {self.count}")
        return self


DeployAction = Literal["init", "deploy", "update", "shadow", "unshadow", "promote", "rollback"]


class Deployment(Record):
    """The control plane: which version is champion, which are shadows, and why (keyed by model)."""

    model: str
    champion: str
    shadows: list[str] = Field(default_factory=list)
    action: DeployAction
    version: str = Field(description="The version this action is about.")
    previous: str | None = Field(None, description="The champion before this action.")
    reason: str = ""
    by: str = "cli"
    ts: datetime


class FeedbackOutcome(Record):
    """A served event or a label that found no partner in time: counted, never silently dropped."""

    ts: datetime
    event_id: str
    outcome: Literal["unlabelled", "late_label", "orphan_label", "duplicate_label"]
    model: str | None = None
    version: str | None = None
    waited_s: float = 0.0


class DriftEvent(Record):
    """A detected change: which detector saw what, where, and since when.

    ``offset`` is the position of the record at detection in ``source`` (the served topic for data
    and prediction drift, the training topic for concept drift); ``change_point`` the estimated
    offset where the change began.
    """

    ts: datetime
    kind: Literal["data", "prediction", "concept"]
    detector: str
    model: str | None = None
    version: str | None = None
    feature: str | None = None
    statistic: float
    threshold: float
    p_value: float | None = None
    event_id: str | None = None
    source: str | None = None
    partition: int | None = None
    offset: int | None = None
    change_point: int | None = None
    detail: str = ""


class Metric(Record):
    """A prequential metric of one model version over a window."""

    ts: datetime
    model: str
    version: str
    metric: str
    value: float
    window: int
    examples: int


class DeadLetter(Record):
    """Anything that could not be decoded or validated, with why and where it came from."""

    ts: datetime
    processor: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: str | None = None
    error: str
    payload_b64: str = Field(description="The original bytes, base64: replayable as they were.")

    @classmethod
    def of(cls, processor: str, topic: str, partition: int, offset: int,
           key: bytes | str | None, value: bytes | None, error: str) -> DeadLetter:
        """A dead letter for the record at topic/partition/offset, keeping its original bytes."""
        return cls(
            ts=datetime.now(UTC),
            processor=processor,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            key=key.decode(errors="replace") if isinstance(key, bytes) else key,
            error=error[:4000],
            payload_b64=base64.b64encode(value or b"").decode(),
        )


def describe_invalid(exc: ValidationError, limit: int = 5) -> str:
    """One line naming each bad field of a failed validation.

    >>> try:
    ...     Label.model_validate({"label": 1})
    ... except ValidationError as exc:
    ...     print(describe_invalid(exc))
    invalid Label: event_id: Field required
    """
    parts = [f"{'.'.join(map(str, e['loc'])) or '(message)'}: {e['msg']}"
             for e in exc.errors()[:limit]]
    return f"invalid {exc.title}: " + "; ".join(parts)


def failure_reason(exc: BaseException) -> str:
    """Why one record failed, in one line: the bad fields of a failed validation, else the
    exception's type and message.

    >>> failure_reason(OverflowError("int too large to convert to float"))
    'OverflowError: int too large to convert to float'
    """
    if isinstance(exc, ValidationError):
        return describe_invalid(exc)
    if isinstance(exc, InvalidRecord):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def label_text(value: LabelValue | None) -> str:
    """Canonical text of a label or prediction, so the two compare equal in SQL.

    >>> label_text(True), label_text(1), label_text(1.0), label_text("yes")
    ('true', '1', '1.0', 'yes')
    """
    if value is True:  # the common cases first: this runs several times per event
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value)


def json_schema(record: type[Record] | type[Struct]) -> dict[str, Any]:
    """The JSON Schema of a wire record, as published in schemas/json/."""
    if issubclass(record, Struct):
        generated = msgspec.json.schema(record)
        defs = generated.get("$defs", {})
        schema = defs.pop(record.__name__)
        if defs:
            schema["$defs"] = defs
    else:
        schema = record.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"driftway/{record.__name__}/v{SCHEMA_VERSION}"
    return schema
