"""One served prediction against its recomputation: the check behind ``driftway explain``.

A prediction row names the state that served it (DESIGN.md, invariant 7): ``state_version``'s
artifact plus what it learned in ``[trained_from, trained_through)`` of the training topic.
``driftway.app.explain`` rebuilds that state (``driftway.logic.replay``) and predicts again; this
module compares the stored answer with the recomputed one — exactly: a float matches only if
it is the same float — and lays out what to show. Pure: rows and results in, results out.

>>> from driftway.logic.models import Explained
>>> row = {"event_id": "e1", "model": "m", "version": "v1", "prediction": "true",
...        "score": 0.75, "explanation": '[{"feature":"x","value":2.0,"contribution":1.5}]',
...        "state_version": "v1", "trained_from": 10, "trained_through": 12,
...        "features": {"x": 2.0}}
>>> stored = StoredPrediction.from_row(row)
>>> compare(stored, Explained(True, 0.75, None, list(stored.explanation))).match
True
>>> [d.what for d in compare(stored, Explained(True, 0.7500000000000001, None, [])).differences]
['score', 'explanation[0]']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from driftway.logic.models import Explained
from driftway.schemas.events import Contribution, ModelVersion, label_text

#: Characters of a version id shown in tables (JSON carries the full id).
SHORT = 12

_CONTRIBUTIONS = msgspec.json.Decoder(list[Contribution])


@dataclass(frozen=True)
class StoredPrediction:
    """A prediction as ClickHouse stored it, with the state that served it."""

    event_id: str
    model: str
    version: str  # the deployed version (slot) it served as
    prediction: str  # label_text of what was predicted ("" for none)
    score: float | None
    explanation: tuple[Contribution, ...]
    state_version: str
    trained_from: int
    trained_through: int
    features: dict[str, float]
    entity_id: str = ""
    predicted_at: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredPrediction:
        """From a row of the predictions table (its explanation is JSON text)."""
        text = row.get("explanation") or "[]"
        score = row.get("score")
        return cls(
            event_id=str(row["event_id"]), model=str(row["model"]), version=str(row["version"]),
            prediction=str(row["prediction"]),
            score=None if score is None else float(score),
            explanation=tuple(_CONTRIBUTIONS.decode(text.encode() if isinstance(text, str)
                                                    else text)),
            # Rows written before predictions named their state served as their version.
            state_version=str(row.get("state_version") or row["version"]),
            trained_from=int(row.get("trained_from") or 0),
            trained_through=int(row.get("trained_through") or 0),
            features={str(k): float(v) for k, v in (row.get("features") or {}).items()},
            entity_id=str(row.get("entity_id") or ""),
            predicted_at=str(row.get("predicted_at") or ""))

    @property
    def live(self) -> bool:
        """Whether the serving state had learned since its version (not a release as published)."""
        return self.trained_through > self.trained_from


@dataclass(frozen=True)
class Step:
    """One version of a lineage, as `driftway explain` shows it."""

    version: str
    parent: str | None
    reason: str = ""
    created_at: str = ""
    training_start: int | None = None
    training_end: int | None = None
    examples_seen: int = 0

    @classmethod
    def from_meta(cls, meta: ModelVersion) -> Step:
        """From the registry's record of a version."""
        o = meta.training_offsets
        return cls(meta.version, meta.parent, meta.reason, meta.created_at.isoformat(),
                   o.start if o else None, o.end if o else None, meta.examples_seen)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Step:
        """From a row of the model_versions table."""
        start, end = row.get("training_start"), row.get("training_end")
        return cls(str(row["version"]), row.get("parent") or None, str(row.get("reason") or ""),
                   str(row.get("created_at") or ""), None if start is None else int(start),
                   None if end is None else int(end), int(row.get("examples_seen") or 0))

    @property
    def offsets(self) -> str:
        if self.training_start is None or self.training_end is None:
            return ""
        return f"[{self.training_start}, {self.training_end})"


def lineage(steps: Mapping[str, Step], version: str) -> list[Step]:
    """`version`, its parent, its parent's parent… newest first, back to version zero (or to
    the first parent that `steps` does not know: then the last step's parent is not None).

    >>> steps = {"b": Step("b", "a"), "a": Step("a", None), "d": Step("d", "c")}
    >>> [s.version for s in lineage(steps, "b")], [s.version for s in lineage(steps, "d")]
    (['b', 'a'], ['d'])
    """
    chain: list[Step] = []
    current: str | None = version
    while current is not None and current in steps and all(s.version != current for s in chain):
        chain.append(steps[current])
        current = steps[current].parent
    return chain


@dataclass(frozen=True)
class Difference:
    """One field where the recomputed prediction is not the stored one."""

    what: str
    stored: str
    rebuilt: str


@dataclass(frozen=True)
class Comparison:
    """The stored prediction against the recomputed one; equal only if every field is exact."""

    differences: tuple[Difference, ...]

    @property
    def match(self) -> bool:
        return not self.differences


def same_float(a: float | None, b: float | None) -> bool:
    """The same float, bit for bit (repr round-trips exactly): 0.0 is not -0.0, nan is nan.

    >>> same_float(0.1 + 0.2, 0.3), same_float(None, None), same_float(float("nan"), float("nan"))
    (False, True, True)
    """
    if a is None or b is None:
        return a is b
    return repr(float(a)) == repr(float(b))


def contribution_text(c: Contribution | None) -> str:
    """A contribution with its exact floats (repr), or "(none)"."""
    if c is None:
        return "(none)"
    return f"{c.feature}: value {c.value!r}, contribution {c.contribution!r}"


def compare(stored: StoredPrediction, rebuilt: Explained) -> Comparison:
    """Field by field: prediction (as text), score and every contribution, exactly."""
    out: list[Difference] = []
    prediction = label_text(rebuilt.prediction)
    if prediction != stored.prediction:
        out.append(Difference("prediction", repr(stored.prediction), repr(prediction)))
    if not same_float(stored.score, rebuilt.score):
        out.append(Difference("score", repr(stored.score), repr(rebuilt.score)))
    recomputed = list(rebuilt.explanation)
    for i in range(max(len(stored.explanation), len(recomputed))):
        a = stored.explanation[i] if i < len(stored.explanation) else None
        b = recomputed[i] if i < len(recomputed) else None
        if a is None or b is None or a.feature != b.feature or not same_float(a.value, b.value) \
                or not same_float(a.contribution, b.contribution):
            out.append(Difference(f"explanation[{i}]", contribution_text(a),
                                  contribution_text(b)))
    return Comparison(tuple(out))


def explain_top(stored: StoredPrediction, configured: int) -> int:
    """How many contributions to recompute: as many as were stored (the top k of a longer
    ranking are the same k), else the configured number."""
    return len(stored.explanation) or configured


@dataclass(frozen=True)
class Section:
    """A titled table: with `columns` a header row, without them name/value pairs."""

    title: str
    rows: tuple[tuple[str, ...], ...]
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """What `driftway explain` found: the prediction, its state and lineage, and the verdict.

    `problem` says why the state could not be rebuilt, and what to do; `source` where the
    training records came from ("topic", "table", or "" when none were needed).
    """

    stored: StoredPrediction
    lineage: Sequence[Step]
    rebuilt: Explained | None = None
    comparison: Comparison | None = None
    learned: int | None = None
    source: str = ""
    problem: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def matches(self) -> bool:
        return self.problem is None and self.comparison is not None and self.comparison.match

    @property
    def verdict(self) -> str:
        if self.problem is not None:
            return f"cannot be rebuilt: {self.problem}"
        if self.comparison is None:
            return "not recomputed"
        if self.comparison.match:
            return "matches exactly"
        n = len(self.comparison.differences)
        return f"differs in {n} field{'s' if n != 1 else ''}"

    def sections(self) -> list[Section]:
        """The report as tables, in the order they are shown."""
        s = self.stored
        out = [Section(f"prediction of {s.event_id}", (
            ("model", s.model), ("entity", s.entity_id), ("predicted at", when(s.predicted_at)),
            ("prediction", s.prediction), ("score", repr(s.score)),
            ("features", ", ".join(f"{k}={v!r}" for k, v in s.features.items())),
        ))]
        if s.explanation:
            out.append(Section("top contributions", tuple(
                (c.feature, repr(c.value), repr(c.contribution)) for c in s.explanation),
                ("feature", "value", "contribution")))
        trained = (f"[{s.trained_from}, {s.trained_through}): "
                   + ("learned live since its version" if s.live else "the version as published"))
        state = [("deployed version", s.version), ("state version", s.state_version),
                 ("training offsets", trained)]
        if self.learned is not None:
            where = f" (from the training {self.source})" if self.source else ""
            state.append(("examples relearned", f"{self.learned}{where}"))
        out.append(Section("model state that served it", tuple(state)))
        out.append(Section("lineage, back to version zero", tuple(
            (step.version[:SHORT], (step.parent or "")[:SHORT], step.reason, step.offsets,
             str(step.examples_seen), when(step.created_at)) for step in self.lineage),
            ("version", "parent", "reason", "offsets", "examples", "created")))
        if self.comparison is not None and self.comparison.differences:
            out.append(Section("differences", tuple(
                (d.what, d.stored, d.rebuilt) for d in self.comparison.differences),
                ("field", "stored", "recomputed")))
        return out

    def to_json(self) -> dict[str, Any]:
        """The report as JSON: full ids, exact floats."""
        s = self.stored
        return {
            "event_id": s.event_id, "model": s.model, "entity_id": s.entity_id,
            "predicted_at": s.predicted_at, "prediction": s.prediction, "score": s.score,
            "explanation": msgspec.to_builtins(list(s.explanation)), "features": s.features,
            "state": {"version": s.version, "state_version": s.state_version,
                      "trained_from": s.trained_from, "trained_through": s.trained_through},
            "lineage": [msgspec.to_builtins(_step_dict(step)) for step in self.lineage],
            "recomputed": None if self.rebuilt is None else {
                "prediction": label_text(self.rebuilt.prediction), "score": self.rebuilt.score,
                "explanation": msgspec.to_builtins(list(self.rebuilt.explanation))},
            "learned": self.learned, "source": self.source or None,
            "matches": self.matches, "verdict": self.verdict, "problem": self.problem,
            "differences": [] if self.comparison is None else [
                {"field": d.what, "stored": d.stored, "recomputed": d.rebuilt}
                for d in self.comparison.differences],
            "notes": list(self.notes),
        }


def when(iso: str) -> str:
    """An ISO time (UTC) as tables show it, to the second.

    >>> when("2026-12-02T01:13:38.061+00:00"), when("")
    ('2026-12-02 01:13:38Z', '')
    """
    return f"{iso[:19].replace('T', ' ')}Z" if iso else ""


def lineage_note(chain: Sequence[Step], version: str) -> str | None:
    """What is wrong with a lineage that does not reach version zero, if anything.

    >>> lineage_note([Step("b", "a")], "b")
    'the lineage stops at b: its parent a is not recorded'
    """
    if not chain:
        return f"version {version[:SHORT]} is in no lineage record"
    last = chain[-1]
    if last.parent is not None:
        return (f"the lineage stops at {last.version[:SHORT]}: its parent "
                f"{last.parent[:SHORT]} is not recorded")
    return None


def _step_dict(step: Step) -> dict[str, Any]:
    return {"version": step.version, "parent": step.parent, "reason": step.reason,
            "created_at": step.created_at, "training_start": step.training_start,
            "training_end": step.training_end, "examples_seen": step.examples_seen}
