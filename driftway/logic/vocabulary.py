"""A bound on the feature space a model learns: per string field, and in total.

One-hot features are named ``field=value`` (driftway.logic.features), so a string field with
unbounded distinct values — an id sent as data — would add a weight (and a scaler's statistics)
per value, without end. `FeatureCap` is the first step of each model the learner makes: it
admits the first ``max_categories`` values of each field, sends later ones to one shared
``field=<other>`` feature, and admits at most ``max_features`` names in all; names past that are
dropped. It lives inside the model artifact, so serving applies exactly the mapping the learner
learned, in the training order.

>>> cap = FeatureCap(max_categories=2, max_features=10)
>>> for zipcode in ("z1", "z2", "z3", "z4"):
...     cap.learn_one({"amount": 1.0, f"zipcode={zipcode}": 1.0})
>>> cap.transform_one({"amount": 2.0, "zipcode=z2": 1.0})
{'amount': 2.0, 'zipcode=z2': 1.0}
>>> cap.transform_one({"amount": 2.0, "zipcode=z9": 1.0})
{'amount': 2.0, 'zipcode=<other>': 1.0}
>>> cap.admitted, cap.overflowed, cap.dropped
(4, 2, 0)
"""

from __future__ import annotations

from typing import Any

from river import base, compose

OTHER = "<other>"  # the value every category past a field's cap becomes


class FeatureCap(base.Transformer):
    """Admits the first `max_categories` values of each string field and `max_features` names
    in all (0: no cap); later values go to ``field=<other>``, names past the total are dropped.

    A name with ``=`` is a one-hot feature of the field before the first ``=``; any other name
    (a number) counts towards `max_features` only. `transform_one` learns nothing: a name not
    yet admitted passes as it is while there is room for it, as learning would admit it.
    """

    def __init__(self, max_categories: int = 100, max_features: int = 1000) -> None:
        self.max_categories = max_categories
        self.max_features = max_features
        # A dict, not a set: insertion-ordered, so the pickle is the same bytes under any
        # PYTHONHASHSEED and a resumed learner publishes what an uninterrupted one would.
        self._admitted: dict[str, None] = {}
        self._categories: dict[str, int] = {}  # admitted values per string field
        self._overflowed = 0
        self._dropped = 0

    @property
    def admitted(self) -> int:
        """Distinct feature names admitted, ``<other>`` buckets included."""
        return len(self._admitted)

    @property
    def overflowed(self) -> int:
        """Values learned as their field's ``<other>`` (each time, not each distinct value)."""
        return self._overflowed

    @property
    def dropped(self) -> int:
        """Features left out of learning because `max_features` names were admitted."""
        return self._dropped

    def learn_one(self, x: dict[str, Any]) -> None:
        admitted = self._admitted
        if x.keys() <= admitted.keys():  # the steady state: one subset test, in C
            return
        for name in x:
            if name in admitted:
                continue
            target = self._target(name)
            if target is None:
                self._dropped += 1
                continue
            if target != name:
                self._overflowed += 1
                if target in admitted:
                    continue
            elif "=" in name:
                field = name.partition("=")[0]
                self._categories[field] = self._categories.get(field, 0) + 1
            admitted[target] = None

    def transform_one(self, x: dict[str, Any]) -> dict[str, Any]:
        admitted = self._admitted
        if x.keys() <= admitted.keys():
            return x  # nothing to rename: the input itself, as an uncapped model would see it
        out: dict[str, Any] = {}
        for name, value in x.items():
            target = name if name in admitted else self._target(name)
            if target is None:
                continue
            if target == name:
                out[name] = value
            else:  # a one-hot field gives one name an event, but other names with "=" may share
                out[target] = out.get(target, 0.0) + value
        return out

    def _target(self, name: str) -> str | None:
        """Where a name not admitted goes: itself, its field's ``<other>``, or nowhere."""
        field, eq, _ = name.partition("=")
        if eq and self.max_categories and self._categories.get(field, 0) >= self.max_categories:
            other = f"{field}={OTHER}"
            if other in self._admitted:
                return other
            name = other
        if self.max_features and len(self._admitted) >= self.max_features:
            return None
        return name


def bounded(model: Any, max_categories: int, max_features: int) -> Any:
    """The model behind a `FeatureCap`, in one pipeline; as it is when both caps are 0 or its
    pipeline already starts with a cap. The model's own steps are shared, not copied.

    >>> from river import linear_model, preprocessing
    >>> model = bounded(preprocessing.StandardScaler() | linear_model.LinearRegression(), 5, 50)
    >>> list(model.steps)
    ['FeatureCap', 'StandardScaler', 'LinearRegression']
    >>> bounded(linear_model.LinearRegression(), 0, 0)
    LinearRegression (...)
    """
    if not (max_categories or max_features) or isinstance(first_step(model), FeatureCap):
        return model
    cap = FeatureCap(max_categories=max_categories, max_features=max_features)
    if isinstance(model, compose.Pipeline):
        return compose.Pipeline(cap, *model.steps.items())
    return compose.Pipeline(cap, model)


def first_step(model: Any) -> Any:
    """A pipeline's first step; any other model itself."""
    if isinstance(model, compose.Pipeline):
        return next(iter(model.steps.values()), None)
    return model


def capped(model: Any, x: dict[str, Any]) -> dict[str, Any]:
    """The features as the model's estimators see them past its cap (if it has one): what its
    predictions are explained in terms of, e.g. ``zipcode=<other>``. The cap maps its own
    output to itself, so the model can be given the result.

    >>> cap = FeatureCap(max_categories=1, max_features=0)
    >>> cap.learn_one({"city=Oslo": 1.0}); cap.learn_one({"city=Bergen": 1.0})
    >>> capped(compose.Pipeline(cap), {"city=Tromsø": 1.0})
    {'city=<other>': 1.0}
    """
    step = first_step(model)
    return step.transform_one(x) if isinstance(step, FeatureCap) else x
