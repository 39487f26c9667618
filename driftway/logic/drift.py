"""Drift detection's shared parts, and concept drift on a model version's errors.

``Alarm`` is what every detector reports; ``FeatureRouter`` routes each event's features into
per-feature buffers for the data-drift monitor (driftway.logic.sequential); the change-point
helpers locate where a change began. ``ConceptDriftDetector`` wraps a River detector on the
prequential error stream with what River's lack: one alert per change (a cooldown), a warm-up,
rises only, and the estimated change point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from river import drift as river_drift

# name -> (River class, the parameter reported as an alarm's threshold)
_DETECTORS: dict[str, tuple[Any, str]] = {
    "adwin": (river_drift.ADWIN, "delta"),
    "kswin": (river_drift.KSWIN, "alpha"),
    "page_hinkley": (river_drift.PageHinkley, "threshold"),
    "ddm": (river_drift.binary.DDM, "drift_threshold"),
    "eddm": (river_drift.binary.EDDM, "beta"),
    "hddm_a": (river_drift.binary.HDDMA, "drift_confidence"),
    "hddm_w": (river_drift.binary.HDDMW, "drift_confidence"),
}
DETECTORS: tuple[str, ...] = tuple(_DETECTORS)
RECENT = 1 << 14  # errors a ConceptDriftDetector keeps to locate a change (a power of two)


@dataclass(frozen=True)
class Alarm:
    """One detected change.

    ``statistic`` exceeded ``threshold`` (data drift: KS D, chi-square or PSI against its critical
    value at ``alpha``; concept drift: the error-mean difference across ``change_point``, against
    the detector's sensitivity parameter). ``index`` is the 1-based update count at detection,
    ``change_point`` the estimated position of the first changed update.
    """

    kind: Literal["data", "prediction", "concept"]
    detector: str
    feature: str | None
    statistic: float
    threshold: float
    index: int
    change_point: int
    p_value: float | None = None
    # What moved (sequential data drift): "up"/"down"/"sd up"/"sd down", or "<category> gained/
    # lost"; mean and sd before (the reference) and after (change point to detection), or the
    # category shares; the other features ranked by their standardised shift since change_point.
    direction: str | None = None
    before: tuple[float, float] | None = None
    after: tuple[float, float] | None = None
    shares_before: dict[str, float] | None = None
    shares_after: dict[str, float] | None = None
    moved: tuple[tuple[str, float], ...] = ()


def make_detector(name: str, params: dict | None = None) -> Any:
    """A fresh River drift detector by name; KSWIN is seeded (``seed=0``) unless params say so.

    River's defaults, false alarms per 100,000 stationary 0/1 errors at error rate 0.1 / 0.4
    (measured over 200,000 each, cooldown 500): ADWIN 0 / 0, HDDM_A 0 / 0, DDM 0 / 0.5 with
    ``warm_start=1000`` (the default 30 alarms early in about 4 streams in 10), KSWIN 0 / 21,
    Page-Hinkley 2.5 / 10.5, HDDM_W 0 / 64, EDDM 58 / 6.

    >>> make_detector("adwin", {"delta": 0.01}).delta
    0.01
    >>> make_detector("cusum")
    Traceback (most recent call last):
    ValueError: unknown drift detector 'cusum'; choose one of adwin, kswin, page_hinkley, ...
    """
    if name not in _DETECTORS:
        raise ValueError(f"unknown drift detector {name!r}; choose one of {', '.join(DETECTORS)}")
    kwargs = dict(params or {})
    if name == "kswin":
        kwargs.setdefault("seed", 0)
    return _DETECTORS[name][0](**kwargs)


def _mean_change(x: np.ndarray) -> int:
    """Where one shift of the mean most likely starts in ``x`` (Gaussian likelihood ratio)."""
    m = len(x)
    if m < 2:
        return 0
    k = np.arange(1, m)
    prefix = np.cumsum(x - x.mean())[:-1]  # sum of x[:k] minus its share of the total
    return int(k[np.argmax(prefix * prefix / (k * (m - k)))])


def _change_start(bins: np.ndarray, log_p: np.ndarray) -> int:
    """Start of the suffix of ``bins`` most likely drawn from a new distribution, not ``log_p``.

    Maximises the summed log-likelihood ratio of the suffix: new distribution (estimated from the
    window, then again from the suffix found) over the reference one.
    """
    q = np.bincount(bins, minlength=len(log_p)) + 0.5
    k = 0
    for _ in range(2):
        llr = (np.log(q / q.sum()) - log_p)[bins]
        k = int(np.argmax(np.cumsum(llr[::-1])[::-1]))
        q = np.bincount(bins[k:], minlength=len(log_p)) + 0.5
    return k


def _floats(values: list) -> np.ndarray:
    try:
        return np.array(values, dtype=float)  # None becomes NaN, i.e. missing
    except (TypeError, ValueError):
        out = np.full(len(values), np.nan)
        for j, v in enumerate(values):
            try:
                out[j] = float(v)
            except (TypeError, ValueError):
                pass
        return out


class FeatureRouter:
    """Routes each event's features into per-feature pending buffers, in stream order.

    A numeric feature's values, and a one-hot group's (``field=value`` names with a truthy
    value, grouped by ``field``) category codes, are appended with their stream positions to the
    buffers of one per-feature object (made by ``_new``); every ``every`` updates ``_check``
    runs on them. Per update it is list appends. The data-drift monitors build on it.
    """

    every = 1

    def __init__(self) -> None:
        self.n = 0  # updates so far
        self._features: dict[tuple[bool, str], Any] = {}
        # feature name -> (pending values, pending positions, category code or None if numeric)
        self._routes: dict[str, tuple[list, list, float | None]] = {}

    def _new(self, name: str, categorical: bool) -> Any:
        raise NotImplementedError

    def _check(self) -> list[Alarm]:
        raise NotImplementedError

    def update(self, features: dict[str, float], at: int | None = None) -> list[Alarm]:
        """Take one event's features; the alarms found when this update closes a round.

        ``at`` is the event's position in the caller's stream (default: this update's count):
        the positions alarms report are the caller's, whatever it did not pass in."""
        self.n = self.n + 1
        n = self.n if at is None else at
        routes = self._routes
        for name, value in features.items():
            route = routes.get(name)
            if route is None:
                route = self._route(name)
            vals, idx, code = route
            if code is None:
                vals.append(value)
                idx.append(n)
            elif value:
                vals.append(code)
                idx.append(n)
        return [] if self.n % self.every else self._check()

    def _route(self, name: str) -> tuple[list, list, float | None]:
        field, eq, category = name.partition("=")
        key = (bool(eq), field if eq else name)
        feature = self._features.get(key)
        if feature is None:
            feature = self._features[key] = self._new(key[1], key[0])
        code = float(feature.codes.setdefault(category, len(feature.codes))) if eq else None
        route = self._routes[name] = (feature.vals, feature.idx, code)
        return route


class ConceptDriftDetector:
    """A River drift detector on a model version's prequential error stream, de-duplicated.

    Alarms during the first ``warmup`` updates are ignored; after an alarm the River detector is
    replaced by a fresh one and alarms are ignored for ``cooldown`` updates (one change, one
    alert; a second change inside the cooldown is reported only if still detected after it).

    ``change_point`` is the maximum-likelihood start of one mean shift in the errors the River
    detector has seen since it started (the last ``RECENT`` at most); ``statistic`` is the
    absolute difference of the mean error after and before it, ``threshold`` the detector's
    sensitivity parameter (ADWIN delta, KSWIN alpha, Page-Hinkley threshold, DDM
    drift_threshold, EDDM beta, HDDM drift_confidence); ``p_value`` is KSWIN's, else None.
    ADWIN's width after a detection is no estimate of the change: River's ADWIN drops only its
    oldest bucket on detection (measured: a change at 10,000 dated 1,024), hence the fit.

    >>> import random
    >>> rng = random.Random(3)
    >>> detector = ConceptDriftDetector("adwin")
    >>> alarms = [detector.update(float(rng.random() < (0.1 if i < 3000 else 0.4)))
    ...           for i in range(6000)]
    >>> [(a.detector, 3000 < a.index < 3500, abs(a.change_point - 3001) < 100)
    ...  for a in alarms if a]
    [('adwin', True, True)]
    """

    def __init__(self, detector: str = "adwin", params: dict | None = None, cooldown: int = 500,
                 warmup: int = 100, increases_only: bool = True) -> None:
        if cooldown < 0 or warmup < 0:
            raise ValueError("cooldown and warmup must be >= 0")
        self.detector = detector
        self.params = params
        self.cooldown = cooldown
        self.warmup = warmup
        self.n = 0  # updates so far
        self._model = make_detector(detector, params)
        self._start = 1  # position of the first error the River detector has seen
        self._quiet_until = warmup
        # An error stream that falls is a model getting better (still learning), not drift:
        # such a detection restarts the detector without an alarm and without a cooldown, so it
        # cannot hide a real rise that follows.
        self.increases_only = increases_only
        self._recent: list[float] = [0.0] * RECENT

    def update(self, error: float) -> Alarm | None:
        """Take one error (0/1 misclassification, or a loss for ADWIN, KSWIN, Page-Hinkley)."""
        self.n = n = self.n + 1
        self._recent[n & (RECENT - 1)] = error
        model = self._model
        model.update(error)
        if not model.drift_detected:
            return None
        if n <= self._quiet_until:
            self._start = n + 1  # River detectors reset themselves on the next update
            return None
        return self._alarm(n)

    def _alarm(self, n: int) -> Alarm | None:
        start = max(self._start, n - RECENT + 1)
        x = np.asarray(self._recent)[np.arange(start, n + 1) & (RECENT - 1)]
        k = _mean_change(x)
        if self.increases_only and k and float(x[k:].mean()) <= float(x[:k].mean()):
            self._model = make_detector(self.detector, self.params)
            self._start = n + 1
            return None
        stat = abs(float(x[k:].mean() - x[:k].mean())) if k else 0.0
        threshold = float(getattr(self._model, _DETECTORS[self.detector][1]))
        p = float(self._model.p_value) if self.detector == "kswin" else None
        self._model = make_detector(self.detector, self.params)
        self._start, self._quiet_until = n + 1, n + self.cooldown
        return Alarm("concept", self.detector, None, stat, threshold, n, start + k, p)
