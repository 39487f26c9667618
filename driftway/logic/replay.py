"""Which training records a model state learns from, and rebuilding a state from the log.

A served model state is a registry version plus the training records it learned since:
``(version, trained_from, trained_through)`` means the version's artifact, then
``learn_one`` on every record of the training topic in ``[trained_from, trained_through)`` that
`learnable` accepts, in offset order. The learner learns by this rule and ``driftway explain``
rebuilds by it, so both give the same state bit for bit (River's models are deterministic
functions of what they learn, and pickling keeps every float and every dict's order).

>>> from driftway.logic.models import make_model
>>> from driftway.schemas.events import TrainingExample
>>> template = make_model("logistic_regression")
>>> ex = TrainingExample(event_id="e", model="m", version="v", features={"x": 1.0},
...                      label="yes", served=None)
>>> learnable(ex, "m", template)
({'x': 1.0}, True)
>>> learnable(ex, "another", template) is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from driftway.logic.models import coerce_label
from driftway.schemas.events import (
    InvalidRecord,
    LabelValue,
    PublishRequest,
    TrainingRecord,
    decode_training,
)


def learnable(record: TrainingRecord, model_name: str,
              template: Any) -> tuple[dict[str, float], LabelValue] | None:
    """The (features, label) a line of `model_name` learns from this record; None if the record
    is not for it (another model, a publish request). Raises ValueError for a label the model
    cannot learn (the learner makes that record a dead letter)."""
    if isinstance(record, PublishRequest) or record.model != model_name:
        return None
    return record.features, coerce_label(template, record.label)


def rebuild(model: Any, records: Iterable[tuple[int, bytes | None]], model_name: str,
            template: Any, trained_from: int, trained_through: int) -> int:
    """Learn, in place, what a line learned in ``[trained_from, trained_through)`` from the
    training topic's (offset, value) records in order; the number of examples learned.

    Records outside the range are skipped, as are the ones the learner refused (undecodable, or
    a label the model cannot learn: their dead letters).
    """
    learned = 0
    for offset, value in records:
        if offset < trained_from or offset >= trained_through:
            continue
        try:
            example = learnable(decode_training(value or b""), model_name, template)
        except (InvalidRecord, ValueError):
            continue
        if example is not None:
            model.learn_one(*example)
            learned += 1
    return learned
