"""Models Driftway can serve, by name, and how to predict with an explanation.

>>> model = MODELS["logistic_regression"]()
>>> for _ in range(50):
...     model.learn_one({"x": 1.0, "z": 0.0}, True); model.learn_one({"x": -1.0, "z": 0.0}, False)
>>> pred, score, why = predict_explained(model, {"x": 2.0, "z": 0.0}, top=1)
>>> pred, round(score, 2) > 0.5, why[0].feature
(True, True, 'x')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from river import base, compose, linear_model, preprocessing

from schemas.events import Contribution, LabelValue


def logistic_regression() -> base.Classifier:
    """StandardScaler | LogisticRegression: the reference online binary classifier."""
    return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())


MODELS: dict[str, Callable[[], Any]] = {
    "logistic_regression": logistic_regression,
}


def make_model(name: str) -> Any:
    """A fresh model by name; a clear error naming the choices otherwise."""
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))} "
            "(DRIFTWAY_PROCESSING__MODEL)"
        ) from None


def coerce_label(model: Any, label: LabelValue) -> LabelValue:
    """A label in the form the model learns from: booleans for binary classifiers."""
    if isinstance(model, base.Classifier) and not model._multiclass:
        if isinstance(label, str):
            lowered = label.strip().lower()
            if lowered in {"true", "1", "yes"}:
                return True
            if lowered in {"false", "0", "no"}:
                return False
            raise ValueError(f"label {label!r} is not binary (true/false, 1/0, yes/no)")
        return bool(label)
    return label


def predict_explained(
    model: Any, x: dict[str, float], top: int
) -> tuple[LabelValue | None, float | None, list[Contribution]]:
    """Prediction, its score, and the top feature contributions (linear models; else none).

    The preprocessing steps run once; the final estimator sees the transformed features, so the
    contributions (weight × transformed value) add up, with the intercept, to the logit.
    """
    steps = list(model.steps.values()) if isinstance(model, compose.Pipeline) else [model]
    xt = x
    for step in steps[:-1]:
        xt = step.transform_one(xt)
    estimator = steps[-1]
    if isinstance(estimator, base.Classifier):
        proba = estimator.predict_proba_one(xt)
        if not proba:
            return None, None, []
        pred = max(proba, key=proba.get)
        score = float(proba[pred])
    else:
        pred = estimator.predict_one(xt)
        score = float(pred) if pred is not None else None
    explanation: list[Contribution] = []
    weights = getattr(estimator, "weights", None)
    if top and isinstance(weights, dict):
        ranked = sorted(
            ((abs(weights.get(f, 0.0) * v), f, v) for f, v in xt.items()), reverse=True
        )[:top]
        explanation = [
            Contribution(feature=f, value=x.get(f, v), contribution=weights.get(f, 0.0) * v)
            for _, f, v in ranked
        ]
    return pred, score, explanation
