from __future__ import annotations

from driftway.app.demo import DemoPlan, loan_applications
from driftway.logic.features import event_features
from driftway.logic.models import make_model
from driftway.schemas.events import RawEvent


def test_demo_stream_is_valid_deterministic_and_changes_concept() -> None:
    plan = DemoPlan(events=3_000, change_at=2_000, seed=7)
    stream = list(loan_applications(plan))
    assert stream == list(loan_applications(plan))
    for event, _ in stream[:50]:
        RawEvent.model_validate(event)
    assert isinstance(stream[0][0]["data"]["elevel"], str)
    model = make_model("logistic_regression")
    for event, label in stream[:1_500]:
        model.learn_one(event_features(event["data"]), label)

    def accuracy(part: list[tuple[dict, bool]]) -> float:
        return sum(model.predict_one(event_features(e["data"])) == y for e, y in part) / len(part)

    before, after = accuracy(stream[1_500:2_000]), accuracy(stream[2_000:2_500])
    assert before > 0.85
    assert before - after > 0.05, (before, after)
