"""Models Driftway can serve, how to make one from the setting, and predictions with explanations.

>>> model = make_model("logistic_regression")
>>> for _ in range(50):
...     model.learn_one({"x": 1.0, "z": 0.0}, True); model.learn_one({"x": -1.0, "z": 0.0}, False)
>>> out = predict_explained(model, {"x": 2.0, "z": 0.0}, top=1)
>>> out.prediction, out.score > 0.5, sorted(out.proba), out.explanation[0].feature
(True, True, ['false', 'true'], 'x')
"""

from __future__ import annotations

import ast
import heapq
import importlib
import math
import re
import weakref
from collections.abc import Callable
from operator import itemgetter
from typing import Any, NamedTuple

from river import base, compose, forest, linear_model, preprocessing, tree

from driftway.logic.vocabulary import FeatureCap, bounded, capped
from driftway.schemas.events import Contribution, LabelValue, label_text

SETTING = "DRIFTWAY_PROCESSING__MODEL"
MAX_OCCLUDED = 32  # occlusion costs one extra prediction per feature; beyond this, no explanation

# River submodules an expression may name; imported only when named.
RIVER_MODULES = frozenset({
    "anomaly", "compose", "drift", "dummy", "ensemble", "facto", "feature_extraction",
    "feature_selection", "forest", "imblearn", "linear_model", "metrics", "misc",
    "model_selection", "multiclass", "naive_bayes", "neighbors", "optim", "preprocessing",
    "proba", "rules", "stats", "tree",
})
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.\w+)*:[A-Za-z_]\w*(\.\w+)*")


def logistic_regression() -> base.Classifier:
    """StandardScaler | LogisticRegression: the reference online binary classifier."""
    return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())


def hoeffding_tree() -> base.Classifier:
    """A Hoeffding tree that splits after 100 examples per leaf at confidence 1 - 1e-5.

    River's defaults (200, 1e-7) wait longer before the first split; these values are the ones
    River's own examples use on streams of a few thousand events. No randomness is involved.
    """
    return tree.HoeffdingTreeClassifier(grace_period=100, delta=1e-5)


def adaptive_random_forest() -> base.Classifier:
    """Adaptive random forest of 5 trees (River's default is 10), seeded so runs repeat.

    Five trees keep learning and predicting about twice as fast as the default; the fixed seed
    makes the bagging weights and feature subsets, hence the model, a function of the data alone.
    """
    return forest.ARFClassifier(n_models=5, seed=42)


def linear_regression() -> base.Regressor:
    """StandardScaler | LinearRegression: the reference online regressor."""
    return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression())


MODELS: dict[str, Callable[[], Any]] = {
    "logistic_regression": logistic_regression,
    "hoeffding_tree": hoeffding_tree,
    "adaptive_random_forest": adaptive_random_forest,
    "linear_regression": linear_regression,
}


class Explained(NamedTuple):
    """One prediction, how sure the model is, and which features drove it."""

    prediction: LabelValue | None
    score: float | None  # probability of the predicted class, or the predicted value
    proba: dict[str, float] | None  # per class, keyed by label_text(class); None for regressors
    explanation: list[Contribution]


def make_model(spec: str, max_categories: int = 0, max_features: int = 0) -> Any:
    """A fresh, untrained River classifier or regressor from the model setting.

    `spec` is a name in MODELS; an import path ``package.module:attr`` whose attr is a factory
    (called with no arguments) or an estimator instance (cloned: hyperparameters kept, learned
    state not); or an expression over River's submodules, with no builtins. The setting is trusted
    configuration (an import path runs any code anyway): the checks catch mistakes, not attacks.
    A cap (`max_categories` values per string field, `max_features` names; 0: none) puts a
    `driftway.logic.vocabulary.FeatureCap` in front of the model.

    >>> model = make_model("preprocessing.StandardScaler() | linear_model.LinearRegression(l2=0.1)")
    >>> list(model.steps), model["LinearRegression"].l2
    (['StandardScaler', 'LinearRegression'], 0.1)
    >>> make_model("river.naive_bayes:GaussianNB")
    GaussianNB ()
    >>> list(make_model("logistic_regression", max_categories=100, max_features=1000).steps)
    ['FeatureCap', 'StandardScaler', 'LogisticRegression']
    >>> make_model("stats.Mean()")
    Traceback (most recent call last):
    ...
    ValueError: cannot make a model from 'stats.Mean()': it gives Mean, ...
    """
    spec = spec.strip()
    if spec in MODELS:
        model = MODELS[spec]()
    elif _IMPORT_PATH.fullmatch(spec):
        model = _from_import_path(spec)
    else:
        model = _from_expression(spec)
    if not isinstance(model, base.Classifier | base.Regressor):
        raise _bad_spec(spec, f"it gives {type(model).__name__}, not a classifier or regressor")
    return bounded(model, max_categories, max_features)


def is_classifier(model: Any) -> bool:
    """Whether the model (or the last step of its pipeline) is a classifier.

    >>> is_classifier(make_model("hoeffding_tree")), is_classifier(make_model("linear_regression"))
    (True, False)
    """
    return isinstance(model, base.Classifier)


def coerce_label(model: Any, label: LabelValue) -> LabelValue:
    """A label in the form the model learns from.

    Binary classifiers (River's ``_multiclass`` False, e.g. logistic regression) learn booleans;
    regressors learn finite floats; multiclass-capable classifiers (trees, forests) learn the
    label as it came, so a boolean stays a boolean and "yes" stays "yes".

    >>> coerce_label(make_model("logistic_regression"), "Yes")
    True
    >>> tree_ = make_model("hoeffding_tree")
    >>> coerce_label(tree_, True), coerce_label(tree_, "b")
    (True, 'b')
    >>> coerce_label(make_model("linear_regression"), "2.5")
    2.5
    >>> coerce_label(make_model("linear_regression"), "high")
    Traceback (most recent call last):
    ...
    ValueError: label 'high' is not a number, and the model is a regressor
    """
    if isinstance(model, base.Classifier):
        if model._multiclass:
            return label
        if isinstance(label, str):
            lowered = label.strip().lower()
            if lowered in {"true", "1", "yes"}:
                return True
            if lowered in {"false", "0", "no"}:
                return False
            raise ValueError(f"label {label!r} is not binary (true/false, 1/0, yes/no)")
        return bool(label)
    try:
        value = float(label)
    except ValueError:
        raise ValueError(
            f"label {label!r} is not a number, and the model is a regressor"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"label {label!r} is not a finite number, and the model is a regressor")
    return value


def predict_explained(model: Any, x: dict[str, float], top: int) -> Explained:
    """Prediction, score, class probabilities and the `top` feature contributions.

    Linear models (a pipeline of transformers ending in an estimator with numeric ``weights``)
    run their preprocessing once; a contribution is weight × transformed value, so they add up,
    with the intercept, to the logit (or the predicted value). Any other model is explained by
    occlusion: the score of the predicted class (for regressors, the prediction) minus the same
    score with the feature left out. That costs one more prediction per feature, so it runs only
    for at most MAX_OCCLUDED features (else no explanation). `top` == 0 skips explaining. A
    classifier that has no probabilities yet gives (None, None, None, []); one that never gives
    probabilities gives its prediction, unscored and unexplained. Behind a feature cap, the
    explanation names the features the model sees past it (e.g. ``zipcode=<other>``).

    >>> model = make_model("hoeffding_tree")
    >>> predict_explained(model, {"a": 1.0}, top=3)
    Explained(prediction=None, score=None, proba=None, explanation=[])
    >>> for i in range(400):
    ...     model.learn_one({"a": i % 10, "b": i % 3}, i % 10 > 4)
    >>> out = predict_explained(model, {"a": 8.0, "b": 1.0}, top=3)
    >>> out.prediction, out.score > 0.9, out.explanation[0].feature
    (True, True, 'a')
    """
    shape = _shape(model)
    classifier = shape.classifier
    if top <= 0:
        return Explained(*_predict(model, x, classifier), [])
    if shape.estimator is not None:
        return _explain_linear(shape, x, top)
    x = capped(model, x)  # occluded one by one in the names the model sees past its cap
    pred, score, proba = _predict(model, x, classifier)
    if score is None or len(x) > MAX_OCCLUDED:
        return Explained(pred, score, proba, [])
    return Explained(pred, score, proba, _occlusion(model, x, pred, score, classifier, top))


def _predict(
    model: Any, x: dict[str, float], classifier: bool
) -> tuple[LabelValue | None, float | None, dict[str, float] | None]:
    if not classifier:
        y = model.predict_one(x)
        return (None, None, None) if y is None else (float(y), float(y), None)
    try:
        probabilities = model.predict_proba_one(x)
    except NotImplementedError:  # a classifier without probabilities: its answer, unscored
        return model.predict_one(x), None, None
    if not probabilities:
        return None, None, None
    pred = max(probabilities, key=probabilities.get)
    proba = {label_text(c): float(p) for c, p in probabilities.items()}
    return pred, float(probabilities[pred]), proba


def _occlusion(
    model: Any, x: dict[str, float], pred: Any, score: float, classifier: bool, top: int
) -> list[Contribution]:
    contributions = []
    for feature, value in x.items():
        rest = {f: v for f, v in x.items() if f != feature}
        # A model that cannot score a partial input still serves its prediction, unexplained.
        try:
            without = (
                model.predict_proba_one(rest).get(pred, 0.0) if classifier
                else model.predict_one(rest)
            )
        except Exception:
            return []
        contributions.append(
            Contribution(feature=feature, value=value, contribution=score - float(without or 0.0))
        )
    return heapq.nlargest(top, contributions, key=lambda c: abs(c.contribution))


class _Shape(NamedTuple):
    """What predict_explained needs to know of a model's structure, found once per model
    object (River's isinstance checks walk a pipeline's steps: per event they cost more than
    the logistic regression's prediction)."""

    classifier: bool  # (of a linear pipeline: whether its final estimator is one)
    pre: tuple[Any, ...] = ()  # a linear model's preprocessing steps ...
    estimator: Any = None  # ... and its final estimator (None: not linear)
    cap_at: int = -1  # the last FeatureCap among pre (-1: none)


_shapes: weakref.WeakKeyDictionary[Any, _Shape] = weakref.WeakKeyDictionary()


def _shape(model: Any) -> _Shape:
    """The model's _Shape: a linear model is a pipeline of transformers ending in an estimator
    with numeric ``weights``. Kept as long as the model object lives (a live update or a new
    version is a new object)."""
    try:
        shape = _shapes.get(model)
        if shape is None:
            shape = _shapes[model] = _find_shape(model)
    except TypeError:  # a model that is not hashable or weakly referable: found every time
        return _find_shape(model)
    return shape


def _find_shape(model: Any) -> _Shape:
    classifier = is_classifier(model)
    steps = list(model.steps.values()) if isinstance(model, compose.Pipeline) else [model]
    *pre, estimator = steps
    # (Weights are read where they are used: they change as the model learns.)
    if isinstance(getattr(estimator, "weights", None), dict) and all(
            isinstance(step, base.Transformer) for step in pre):
        caps = [i for i, step in enumerate(pre) if isinstance(step, FeatureCap)]
        return _Shape(classifier, tuple(pre), estimator, caps[-1] if caps else -1)
    return _Shape(classifier)


def _explain_linear(shape: _Shape, x: dict[str, float], top: int) -> Explained:
    xt = x
    for i, step in enumerate(shape.pre):
        xt = step.transform_one(xt)
        if i == shape.cap_at:
            x = xt  # contributions named, and valued, as the cap gives them: zipcode=<other>
    estimator = shape.estimator
    pred, score, proba = _predict(estimator, xt, shape.classifier)
    if pred is None:
        return Explained(pred, score, proba, [])
    weights = estimator.weights
    # Rank plain tuples; build records for the top ones only (scoring does this per event).
    # sorted(...)[:top] is what heapq.nlargest returns, ties in the same order, and faster on
    # the few features of an event.
    ranked = sorted(
        [(abs(c), f, v, c) for f, v in xt.items() if (c := weights.get(f, 0.0) * v) == c],
        key=itemgetter(0), reverse=True)[:top]  # (c == c drops NaN)
    return Explained(pred, score, proba, [
        Contribution(feature=f, value=x.get(f, v), contribution=float(c))
        for _, f, v, c in ranked])


def _from_import_path(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise _bad_spec(spec, f"cannot import it ({e})") from e
    if isinstance(obj, base.Estimator):
        return obj.clone()
    if not callable(obj):
        raise _bad_spec(spec, f"{attr} is neither a factory nor an estimator")
    try:
        return obj()
    except Exception as e:
        raise _bad_spec(spec, f"calling {attr}() failed ({type(e).__name__}: {e})") from e


def _from_expression(spec: str) -> Any:
    try:
        tree_ = ast.parse(spec, mode="eval")
    except SyntaxError as e:
        raise _bad_spec(spec, f"it is not a name, an import path or an expression ({e.msg})") from e
    names = {node.id for node in ast.walk(tree_) if isinstance(node, ast.Name)}
    unknown = sorted(names - RIVER_MODULES)
    if unknown:
        raise _bad_spec(
            spec, f"unknown name(s) {', '.join(unknown)}; an expression may use only River's "
            f"submodules ({', '.join(sorted(RIVER_MODULES))})"
        )
    if any(isinstance(n, ast.Attribute) and n.attr.startswith("_") for n in ast.walk(tree_)):
        raise _bad_spec(spec, "private attributes are not allowed")
    namespace: dict[str, Any] = {"__builtins__": {}}
    namespace.update({name: importlib.import_module(f"river.{name}") for name in names})
    try:
        return eval(compile(tree_, "<model setting>", "eval"), namespace)
    except Exception as e:
        raise _bad_spec(spec, f"evaluating it failed ({type(e).__name__}: {e})") from e


def _bad_spec(spec: str, reason: str) -> ValueError:
    return ValueError(
        f"cannot make a model from {spec!r}: {reason}. {SETTING} takes a built-in name "
        f"({', '.join(MODELS)}), an import path 'package.module:attr' to a factory or a River "
        "estimator, or a River expression such as "
        "'preprocessing.StandardScaler() | linear_model.LogisticRegression(l2=0.01)'"
    )
