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
import re
import sys
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
    WithJsonSchema,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
FEATURE_SET_VERSION = "fs1"

Scalar = bool | int | float | str | None
LabelValue = bool | int | float | str

# Defaults of the input limits (driftway.settings.LimitsSettings, DRIFTWAY_LIMITS__*): the
# published JSON Schemas of raw events and labels state these values.
MAX_RECORD_BYTES = 1_000_000
MAX_FIELDS = 1_000
MAX_STRING_LENGTH = 1_024
MAX_ID_LENGTH = 256

#: Epoch milliseconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: a ``ts`` given as
#: a number lies between them (the years Python's datetime holds).
MIN_EPOCH_MS = -62_135_596_800_000
MAX_EPOCH_MS = 253_402_300_799_999
#: The largest float: features are floats, so a number beyond it is refused.
MAX_FLOAT = sys.float_info.max

# An RFC 3339 date-time (the profile of ISO 8601 that JSON Schema's `date-time` names) as a
# pattern, which every JSON Schema validator enforces (`format` is only an annotation to most):
# the exact calendar (month lengths, leap years), years 0001-9999, an offset always, ASCII
# digits. `$(?!\n)` ends the text in ECMA-262 and in Python alike (Python's `$` also matches
# before a final newline).
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = ("(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
              "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
              "|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_LEAP_DAY = ("(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])"
             "|(?:0[48]|[2468][048]|[13579][26])00)-02-29")
RFC3339_PATTERN = (
    f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})"
    "[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]+)?"
    "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$(?!\n)")
_RFC3339 = re.compile(RFC3339_PATTERN)


def _epoch_millis_or_iso(value: Any) -> Any:
    """Numbers are epoch milliseconds (pydantic alone would guess seconds for small ones);
    text must match RFC3339_PATTERN, so exactly what the published schema says is accepted
    (pydantic alone also takes dates, times without an offset, and numbers written as text)."""
    if isinstance(value, bool):
        raise ValueError("ts must be an ISO-8601 string or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        # Compared before converting: nan fails the comparison, and no C library is asked
        # about a time outside its calendar.
        if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
            raise ValueError(f"ts {value!r} (epoch milliseconds) is outside the years 1-9999")
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, str) and _RFC3339.match(value) is None:
        raise ValueError(f"ts {value[:40]!r} is not an RFC 3339 date-time with an offset "
                         "(like 2026-01-01T12:00:00Z) nor epoch milliseconds")
    return value


def _finite_float(value: int | float) -> bool:
    """True when `value` is a finite number a float holds (features are floats). Compared,
    not converted: an integer just beyond the largest float would round down to it."""
    return -MAX_FLOAT <= value <= MAX_FLOAT


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def limit_note(setting: str) -> str:
    """How a published schema names a limit whose value is a setting's default."""
    return (f"the default of the setting limits.{setting}, DRIFTWAY_LIMITS__{setting.upper()}; "
            "a deployment may set another")


#: What ``ts`` accepts, as published: `format` for code generators, `pattern` for validators.
_TS_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN},
        {"type": "number", "minimum": MIN_EPOCH_MS, "maximum": MAX_EPOCH_MS},
    ],
    "description": "An RFC 3339 date-time with an offset (ISO 8601, e.g. "
    "2026-01-01T12:00:00Z), or epoch milliseconds within the years 1-9999.",
}

Timestamp = Annotated[datetime, BeforeValidator(_epoch_millis_or_iso),
                      WithJsonSchema(_TS_SCHEMA)]

_NUMBER_SCHEMA = {"type": "number", "minimum": -MAX_FLOAT, "maximum": MAX_FLOAT}
_STRING_SCHEMA = {"type": "string", "maxLength": MAX_STRING_LENGTH}
_DATA_SCHEMA = {
    "type": "object",
    "maxProperties": MAX_FIELDS,
    "propertyNames": {"maxLength": MAX_STRING_LENGTH},
    "additionalProperties": {"anyOf": [{"type": "boolean"}, _NUMBER_SCHEMA, _STRING_SCHEMA,
                                       {"type": "null"}]},
    "description": "Flat: each value a boolean, a number a float holds, text or null. "
    f"At most {MAX_FIELDS:,} fields ({limit_note('max_fields')}); names and texts of at most "
    f"{MAX_STRING_LENGTH:,} characters ({limit_note('max_string_length')}).",
}
_LABEL_SCHEMA = {
    "anyOf": [{"type": "boolean"}, _NUMBER_SCHEMA, _STRING_SCHEMA],
    "description": "A boolean, a number a float holds, or a text of at most "
    f"{MAX_STRING_LENGTH:,} characters ({limit_note('max_string_length')}).",
}


def _id_schema() -> dict[str, Any]:
    return {"maxLength": MAX_ID_LENGTH, "description": f"At most {MAX_ID_LENGTH} characters "
            f"({limit_note('max_id_length')})."}


def _record_limit(schema: dict[str, Any]) -> None:
    schema["description"] += (
        f"\n\nA record of more than {MAX_RECORD_BYTES:,} bytes of UTF-8 JSON is refused "
        f"({limit_note('max_record_bytes')}), a limit JSON Schema cannot state.")


class Record(BaseModel):
    """Shared base of every wire record: strict about unknown top-level fields, frozen."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_timedelta="float")

    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("schema_version", mode="before")
    @classmethod
    def _not_boolean(cls, v: Any) -> Any:
        if isinstance(v, bool):  # pydantic's lax mode takes true for 1; the schema does not
            raise ValueError("schema_version must be the number 1, not a boolean")
        return v

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

    model_config = ConfigDict(json_schema_extra=_record_limit)

    # The lengths and counts the input limits bound (driftway.logic.limits) are checked where
    # raw events enter, against the settings: the schema shows their defaults.
    event_id: str = Field(min_length=1, json_schema_extra=_id_schema())
    entity_id: str = Field(min_length=1, json_schema_extra=_id_schema())
    ts: Timestamp
    data: Annotated[dict[str, Scalar], WithJsonSchema(_DATA_SCHEMA)] = Field(
        default_factory=dict)

    @field_validator("ts")
    @classmethod
    def _tz(cls, v: datetime) -> datetime:
        return _aware(v)

    @field_validator("data", mode="before")
    @classmethod
    def _flat(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for name, value in v.items():
                kind = value.__class__
                if kind is str or kind is bool or value is None:  # most values, tested fast
                    continue
                if kind is float or kind is int:
                    if not -MAX_FLOAT <= value <= MAX_FLOAT:  # nan and inf fail it too
                        raise ValueError(f"data.{name} is a number no float can hold")
                elif isinstance(value, dict | list):
                    raise ValueError(
                        f"data.{name} is {'an object' if isinstance(value, dict) else 'a list'}; "
                        "data must be flat: numbers, strings, booleans or null")
                elif isinstance(value, int | float) and not isinstance(value, bool) \
                        and not _finite_float(value):
                    raise ValueError(f"data.{name} is a number no float can hold")
        return v


class Label(Record):
    """The truth for an earlier event, when it becomes known. Keyed by event id."""

    model_config = ConfigDict(json_schema_extra=_record_limit)

    event_id: str = Field(min_length=1, json_schema_extra=_id_schema())
    label: Annotated[LabelValue, WithJsonSchema(_LABEL_SCHEMA)]
    ts: Timestamp | None = None

    @field_validator("ts")
    @classmethod
    def _tz(cls, v: datetime | None) -> datetime | None:
        return None if v is None else _aware(v)  # a naive datetime given in Python: UTC

    @field_validator("label")
    @classmethod
    def _float_holds(cls, v: LabelValue) -> LabelValue:
        if (v.__class__ is float or v.__class__ is int) and not -MAX_FLOAT <= v <= MAX_FLOAT:
            raise ValueError("label is a number no float can hold")
        return v


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
    """A raw event's features as scoring makes them (no topic carries it): numeric features
    ready for a model."""

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
    # What moved (sequential data and prediction drift; empty for older records and concept
    # drift): direction, mean and sd before (reference) and after (change point to detection)
    # or category shares, and the other features ranked by standardised shift since the change.
    direction: str | None = None
    before_mean: float | None = None
    before_sd: float | None = None
    after_mean: float | None = None
    after_sd: float | None = None
    shares_before: dict[str, float] = Field(default_factory=dict)
    shares_after: dict[str, float] = Field(default_factory=dict)
    moved_features: list[str] = Field(default_factory=list)
    moved_shifts: list[float] = Field(default_factory=list)


class Metric(Record):
    """A prequential metric of one model version over a window."""

    ts: datetime
    model: str
    version: str
    metric: str
    value: float
    window: int
    examples: int


class ExperimentResult(Record):
    """One contender of an experiment on the history (``driftway experiment``): a candidate
    model replayed through the stored joined examples, or the champion's served answers over
    the same events (``role`` served). Every contender of one run shares its ``experiment``."""

    ts: datetime
    experiment: str = Field(description="The run's id.")
    model: str = Field(description="The model line whose training examples were replayed.")
    candidate: str = Field(description="The candidate's model spec; `served` for the champion.")
    role: Literal["candidate", "served"]
    examples: int
    first_served: datetime | None = Field(default=None,
                                          description="When the first example was served.")
    last_served: datetime | None = Field(default=None,
                                         description="When the last example was served.")
    source: Literal["table", "topic"]
    metrics: dict[str, float] = Field(
        description="accuracy, log_loss, roc_auc (classifiers) or mae, rmse (regressors).")
    examples_per_s: float | None = None
    best: bool = Field(default=False, description="The winner by the run's metric.")
    shadow: str | None = Field(default=None,
                               description="The version --shadow-best deployed from it.")


class ProcessHealth(Record):
    """What a process on the runtime is doing, when it is not simply running: keyed by
    processor/instance, the latest record of each says. Written when it starts (running), when
    its store outside Kafka goes away (waiting, with the reason and each try) and when it is
    back (running)."""

    processor: str
    instance: str
    state: Literal["running", "waiting"]
    reason: str | None = None
    since: datetime = Field(description="When it entered this state.")
    attempts: int = Field(0, ge=0, description="Tries so far while waiting.")
    at: datetime


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


class ReplayMark(Record):
    """A dead letter's original record, sent again to its source topic by ``driftway
    dead-letters replay``. Keyed by the source coordinates (``topic/partition/offset``) on a
    compacted topic, and written in one transaction with the record it marks: a later replay
    passes the record over, and a replay that crashed marked exactly what it sent."""

    source_topic: str
    source_partition: int
    source_offset: int
    processor: str = Field(description="The processor whose dead letter it was.")
    replayed_at: datetime
    by: str = Field("", description="Who replayed it (user@host).")


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
