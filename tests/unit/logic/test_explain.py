"""The check behind `driftway explain`: stored rows, exact comparison, lineage, the report."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime
from typing import Any

import msgspec

from driftway.io.clickhouse import ROWS, prediction_row
from driftway.logic.explain import (
    Comparison,
    Difference,
    Report,
    Step,
    StoredPrediction,
    compare,
    explain_top,
    lineage,
    lineage_note,
    same_float,
)
from driftway.logic.models import Explained, make_model, predict_explained
from driftway.logic.replay import rebuild
from driftway.schemas.events import Contribution, Prediction, TrainingExample, label_text


def stored_row(p: Prediction) -> dict[str, Any]:
    """The row the sink makes of a prediction, as a query returns it."""
    return dict(zip(ROWS["predictions"].columns, prediction_row(p), strict=True))


def served(model: Any, x: dict[str, float], **state: Any) -> Prediction:
    """What scoring publishes for one event: the model's explained answer and its state."""
    out = predict_explained(model, x, 3)
    return Prediction(event_id="e1", entity_id="u1", ts=datetime.now(UTC), model="m",
                      version="slot", prediction=out.prediction, score=out.score,
                      explanation=out.explanation, latency_ms=1.0, received_at=1.0,
                      predicted_at=2.0, features=x, **state)


def stream(n: int, seed: int = 7) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {k: rng.uniform(-3, 3) for k in ("b", "a", "c")}  # not sorted: order is kept
        out.append((x, x["a"] - 0.3 * x["b"] > 0.1))
    return out


def test_a_stored_row_keeps_every_float_exactly() -> None:
    model = make_model("logistic_regression")
    for x, y in stream(200):
        model.learn_one(x, y)
    x = {"b": 0.1, "a": 1 / 3, "c": -2e-17}
    p = served(model, x, state_version="v0", trained_from=5, trained_through=9)
    stored = StoredPrediction.from_row(stored_row(p))  # its explanation as JSON text
    assert stored.score == p.score and repr(stored.score) == repr(p.score)
    assert list(stored.explanation) == p.explanation
    assert list(stored.features) == ["b", "a", "c"] and stored.features == x
    assert (stored.state_version, stored.trained_from, stored.trained_through) == ("v0", 5, 9)
    assert stored.live and stored.prediction == label_text(p.prediction)


def test_a_row_from_before_states_were_recorded_names_its_version() -> None:
    row = {"event_id": "e", "model": "m", "version": "v7", "prediction": "true", "score": 0.5,
           "explanation": "[]", "state_version": "", "trained_from": 0, "trained_through": 0,
           "features": {}}
    stored = StoredPrediction.from_row(row)
    assert stored.state_version == "v7" and not stored.live


def test_the_served_state_rebuilt_from_its_version_and_the_log_matches_bit_for_bit() -> None:
    # The learner's line: version v0 published after 150 examples, then it learns live.
    line = make_model("logistic_regression")
    examples = stream(400)
    for x, y in examples[:150]:
        line.learn_one(x, y)
    artifact = pickle.dumps(line)
    line = pickle.loads(artifact)
    log = [(offset, TrainingExample(event_id=f"t{offset}", model="m", version="v0",
                                    features=x, label=y, served=None).to_bytes())
           for offset, (x, y) in enumerate(examples)]
    for x, y in examples[150:321]:
        line.learn_one(x, y)
    probe = {"b": 0.25, "a": -0.125, "c": 1.5}
    stored = StoredPrediction.from_row(stored_row(
        served(line, probe, state_version="v0", trained_from=150, trained_through=321)))

    state = pickle.loads(artifact)
    template = make_model("logistic_regression")
    assert rebuild(state, log, "m", template, 150, 321) == 171
    rebuilt = predict_explained(state, stored.features, explain_top(stored, 3))
    assert compare(stored, rebuilt).match

    # One example too many, and the recomputation says where it differs.
    state = pickle.loads(artifact)
    rebuild(state, log, "m", template, 150, 322)
    comparison = compare(stored, predict_explained(state, stored.features, 3))
    assert not comparison.match and "score" in [d.what for d in comparison.differences]


def test_floats_must_be_the_same_float() -> None:
    assert same_float(0.5, 0.5) and same_float(None, None)
    assert not same_float(0.0, -0.0) and not same_float(0.5, None)
    assert not same_float(0.1 + 0.2, 0.3)


def stored_of(prediction: str = "true", score: float | None = 0.75,
              explanation: tuple[Contribution, ...] = ()) -> StoredPrediction:
    return StoredPrediction(event_id="e", model="m", version="v", prediction=prediction,
                            score=score, explanation=explanation, state_version="v",
                            trained_from=0, trained_through=0, features={"x": 1.0})


def test_every_differing_field_is_named_with_both_values() -> None:
    c = (Contribution("x", 1.0, 0.5), Contribution("y", 2.0, -0.25))
    stored = stored_of(explanation=c)
    assert compare(stored, Explained(True, 0.75, None, list(c))) == Comparison(())
    one_ulp = 0.7500000000000001
    diff = compare(stored, Explained(False, one_ulp, None, [c[0], Contribution("z", 2.0, -0.25)]))
    assert diff.differences == (
        Difference("prediction", "'true'", "'false'"),
        Difference("score", "0.75", "0.7500000000000001"),
        Difference("explanation[1]", "y: value 2.0, contribution -0.25",
                   "z: value 2.0, contribution -0.25"))
    shorter = compare(stored, Explained(True, 0.75, None, [c[0]]))
    assert [(d.what, d.rebuilt) for d in shorter.differences] == [("explanation[1]", "(none)")]
    assert not compare(stored_of(score=None), Explained(True, 0.75, None, list(c))).match
    # A regressor's prediction is stored as text: 2.5 is "2.5".
    assert compare(stored_of("2.5", 2.5), Explained(2.5, 2.5, None, [])).match


def test_the_number_of_contributions_recomputed() -> None:
    c = (Contribution("x", 1.0, 0.5),)
    assert explain_top(stored_of(explanation=c), 3) == 1
    assert explain_top(stored_of(), 3) == 3


def test_lineage_goes_back_to_version_zero_and_says_where_it_breaks() -> None:
    steps = {s.version: s for s in (Step("c", "b", "250 examples", training_start=250,
                                         training_end=500),
                                    Step("b", "a", training_start=0, training_end=250),
                                    Step("a", None, "initial", training_start=0, training_end=0),
                                    Step("x", "x"), Step("orphan", "gone"))}
    chain = lineage(steps, "c")
    assert [s.version for s in chain] == ["c", "b", "a"] and lineage_note(chain, "c") is None
    assert chain[0].offsets == "[250, 500)" and Step("n", None).offsets == ""
    assert [s.version for s in lineage(steps, "x")] == ["x"]  # a loop ends
    assert lineage_note(lineage(steps, "orphan"), "orphan") == \
        "the lineage stops at orphan: its parent gone is not recorded"
    assert lineage_note(lineage(steps, "nope"), "nope") == "version nope is in no lineage record"


def test_the_report_shows_state_lineage_and_verdict() -> None:
    c = (Contribution("x", 1.0, 0.5),)
    stored = StoredPrediction(event_id="e", model="m", version="slot", prediction="true",
                              score=0.75, explanation=c, state_version="v1" * 10,
                              trained_from=10, trained_through=14, features={"x": 1.0})
    chain = [Step("v1" * 10, "v0", "drift"), Step("v0", None, "initial")]
    good = Report(stored, chain, Explained(True, 0.75, None, list(c)), Comparison(()), 4,
                  "topic")
    assert good.matches and good.verdict == "matches exactly"
    titles = [s.title for s in good.sections()]
    assert titles == ["prediction of e", "top contributions", "model state that served it",
                      "lineage, back to version zero"]
    state = dict(good.sections()[2].rows)
    assert state["training offsets"] == "[10, 14): learned live since its version"
    assert state["examples relearned"] == "4 (from the training topic)"
    assert good.sections()[3].rows[0][:2] == ("v1v1v1v1v1v1", "v0")
    data = msgspec.json.decode(msgspec.json.encode(good.to_json()))
    assert data["matches"] is True and data["lineage"][1]["parent"] is None
    assert data["recomputed"]["score"] == 0.75 and data["state"]["trained_through"] == 14

    bad = Report(stored, chain, Explained(True, 0.5, None, list(c)),
                 compare(stored, Explained(True, 0.5, None, list(c))), 4, "table")
    assert not bad.matches and bad.verdict == "differs in 1 field"
    assert bad.sections()[-1].rows == (("score", "0.75", "0.5"),)
    gone = Report(stored, chain, problem="version v1 is no longer in the registry")
    assert not gone.matches and gone.verdict.startswith("cannot be rebuilt: version v1")
    assert gone.to_json()["recomputed"] is None
