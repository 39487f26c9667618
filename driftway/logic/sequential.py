"""Sequential data drift: per-feature tests against its reference, near the detection limit.

Each feature's first ``reference`` values are its reference (later it grows with older watched
values, see ``WatchedFeature._grow``, so its estimation error shrinks). The false-alarm budget is
split evenly over the watched features: each has an in-control run length of
``n_features * 1e5 / budget`` events (:func:`log_run_length`).

A numeric feature's later values become normal scores through the reference's mid-ranks (a
skewed, heavy-tailed or discrete feature looks N(0, 1) under no change, standardised by the
reference's own scores) and feed ten one-sided CUSUMs of log-likelihood ratios: mean shifts of
+-0.25, 0.5, 1 and 2 sd, sd ratios 1.5 and 1/1.5. A CUSUM whose alternative carries ``I`` nats
per event (its Kullback-Leibler divergence) stops at ``h + 2 ln I`` with ``h`` of
:func:`threshold`: its false alarms then come at a rate proportional to ``1 / I`` (Siegmund's
approximation, ``I e^-h'`` for a threshold ``h'``), which minimises the summed delays: one nat
more costs a CUSUM ``1 / I`` events, so the small shifts, slow to find, get most of the budget.
A short reference raises each threshold by a factor ``1 + h' / (I n)`` (``_thresholds``): its
estimation error weighs over the ``h' / I`` events a CUSUM needs, and most on small shifts.

A one-hot group (``field=value`` names, grouped by ``field``) is one categorical feature: every
batch, the window-limited generalised likelihood ratios of driftway.logic.category_mix compare
the category counts of its last events with the reference's, all categories at once. Categories
first seen after the reference share one "other" count, expected at the reference's rate of
categories seen once (Good-Turing).

``NUMERIC_CALIBRATION`` (and category_mix's ``MIX_CALIBRATION``) are measured by simulation on
stationary streams (see their comment). Values are buffered and the statistics run vectorised
every ``batch`` updates; the alarm's ``index`` is the position where the statistic crossed, its
``change_point`` where the CUSUM last left zero (numeric) or the maximum-likelihood start of
the changed counts (categorical).

A numeric feature whose reference trends (rank correlation with arrival order above ``TREND``: a
counter, a timestamp sent as a number) is non-stationary by construction and not watched; it is
listed in ``unwatched``.

>>> import random
>>> rng = random.Random(7)
>>> monitor = SequentialDriftMonitor(reference=500)
>>> alarms = []
>>> for i in range(3000):
...     x = rng.gauss(1.0 if i >= 1500 else 0.0, 1.0)
...     alarms += monitor.update({"x": x, "n": float(i), f"city={rng.choice('ab')}": 1.0})
>>> [(a.kind, a.detector, a.feature, a.direction) for a in alarms]
[('data', 'cusum', 'x', 'up')]
>>> 1500 < alarms[0].index <= 1600, abs(alarms[0].change_point - 1501) < 30, monitor.unwatched
(True, True, ['n'])
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import special

from driftway.logic.category_mix import CategoryFeature
from driftway.logic.drift import Alarm, FeatureRouter
from driftway.logic.reference import WatchedFeature

MEAN_SHIFTS = (0.25, 0.5, 1.0, 2.0)  # sd; each up and down
SD_RATIOS = (1.5, 1 / 1.5)
TREND = 0.5  # |rank correlation with arrival order| of a reference that is not watched
RANK_SPAN = 100  # other features are ranked over at least this many events before the alarm
TOP = 3  # features listed as "also moved" in an alarm
# Thresholds: a numeric CUSUM stops at _thresholds, the GLR of a category mix at
# driftway.logic.category_mix.mix_threshold (its calibration is there).
# Measured by simulation at a budget of 1 per 100,000 (per-statistic maxima over stationary
# streams of 100,000 events after a 1,000-event reference; 450 Gaussian, 150 Poisson(2), 150
# binary): NUMERIC_CALIBRATION 4.3 / 4.7 / 5.0 gave 0.62 / 0.31 / 0.31 false alarms per 100,000
# events over 20 Gaussian features (0.61 / 0.37 / 0.32 over 11), 0.80 / 0.67 / 0.67 over Poisson
# ones (0.88 / 0.73 / 0.44 over 11), 0.40 / 0.40 / 0.27 over binary ones (0.81 / 0.37 / 0.22),
# none in the first 5,000 events; and mean delays of 344 / 357 / 368 events at +0.25 sd, 108 / 111
# / 114 at +0.5 sd, 32 / 33 / 34 at +1 sd (60 streams each, against a 16,000-event reference; the
# alarm comes up to a batch later). The monitor itself, at 4.3, on 20 stationary streams of
# bench/drift.py's category_shift (10 Gaussian features and a city) gave 1.1 per 100,000 (20 of
# the 22 on the Gaussian features), more than the simulation's 0.61; at 4.7, 0.95 (17 of 19),
# hence 4.7 and not less. Without the reference's term in _thresholds, 4.7 gave 0.73 / 0.93 / 0.80
# (a quarter of them in the first 5,000 events) and 351 / 110 / 33; with ln min(1, KL) in place of
# 2 ln KL (one budget share per CUSUM), 371 / 106 / 28 at 0.3 per 100,000.
NUMERIC_CALIBRATION = 4.7


def log_run_length(n_features: int, false_alarms_per_100k: float) -> float:
    """ln of each feature's in-control run length, the budget split evenly over the features.

    >>> round(log_run_length(20, 1.0), 2)
    14.51
    """
    return math.log(max(1, n_features) * 100_000 / false_alarms_per_100k)


def threshold(n_features: int, false_alarms_per_100k: float) -> float:
    """The base CUSUM threshold in nats (where an alternative of 1 nat per event stops, against
    a long reference).

    >>> round(threshold(20, 1.0), 2)
    19.21
    """
    return log_run_length(n_features, false_alarms_per_100k) + NUMERIC_CALIBRATION


_NUMERIC_KL = np.array([m * m / 2 for m in MEAN_SHIFTS for _ in (1, -1)]
                       + [r * r / 2 - 0.5 - math.log(r) for r in SD_RATIOS])
_OFFSETS = 2 * np.log(_NUMERIC_KL)


def _thresholds(log_arl: float, n: float | np.ndarray) -> np.ndarray:
    """Each numeric CUSUM's threshold against a reference of ``n`` values: ``h = log_arl +
    NUMERIC_CALIBRATION + 2 ln KL``, times ``1 + h / (KL n)``. The reference's estimation error
    gives each CUSUM a random drift, which matters over the ``h / KL`` events the CUSUM needs
    (a two-sample comparison's variance grows by that over ``n``): a short reference raises the
    small shifts' thresholds most, until it has grown."""
    h = log_arl + NUMERIC_CALIBRATION + _OFFSETS
    return h * (1 + h / (_NUMERIC_KL * n))

# llr = z * _LINEAR + z^2 * _SQUARE + _CONSTANT per CUSUM (mean: d z - d^2 / 2; sd ratio r:
# z^2 (1 - 1 / r^2) / 2 - ln r)
_D = np.array([s * m for m in MEAN_SHIFTS for s in (1, -1)])
_R = np.array(SD_RATIOS)
_LINEAR = np.concatenate((_D, 0 * _R))
_SQUARE = np.concatenate((0 * _D, (1 - 1 / (_R * _R)) / 2))
_CONSTANT = np.concatenate((-_D * _D / 2, -np.log(_R)))

NUMERIC_NAMES = tuple(f"mean {'up' if s > 0 else 'down'} {m:g} sd"
                      for m in MEAN_SHIFTS for s in (1, -1)) + ("sd up", "sd down")


def _numeric_llr(z: np.ndarray) -> np.ndarray:
    """Per-value log-likelihood ratios of the numeric alternatives: shape (len(z), 10)."""
    return np.multiply.outer(z, _LINEAR) + np.multiply.outer(z * z, _SQUARE) + _CONSTANT


def _cusum(s0: np.ndarray, llr: np.ndarray) -> np.ndarray:
    """S_t = max(0, S_{t-1} + llr_t) for every column, vectorised: C_t - min(-S_0, min C_s)."""
    c = np.cumsum(llr, axis=0)
    return c - np.minimum(np.minimum.accumulate(c, axis=0), -s0)


class NumericFeature(WatchedFeature):
    """A numeric feature: normal scores through its reference's mid-ranks, ten CUSUMs."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(name, size)
        self.s = np.empty(0)

    def _present(self, v: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return v[~np.isnan(v)], i[~np.isnan(v)]  # missing values are skipped

    def _fit(self, ref: np.ndarray, keep: bool) -> None:
        self.sorted = np.sort(ref)
        mid = self._ranks(ref)  # mid-ranks: ties (a binary feature) do not look like a trend
        rho = np.corrcoef(mid, np.arange(len(ref)))[0, 1] if mid.std() > 0 else 0.0
        self.trending = bool(abs(rho) > TREND)
        z = special.ndtri((mid / 2 + 0.5) / (len(ref) + 1))
        self.z_mean, self.z_sd = float(z.mean()), float(z.std()) or 1.0
        if not keep:
            self.s = np.zeros(len(NUMERIC_NAMES))

    def _ranks(self, v: np.ndarray) -> np.ndarray:
        """Twice the mid-ranks of ``v`` in the reference."""
        return (np.searchsorted(self.sorted, v, "left")
                + np.searchsorted(self.sorted, v, "right")).astype(float)

    def _scores(self, v: np.ndarray) -> np.ndarray:
        z = special.ndtri((self._ranks(v) / 2 + 0.5) / (len(self.sorted) + 1))
        return (z - self.z_mean) / self.z_sd

    def _test(self, v: np.ndarray, i: np.ndarray, log_arl: float
              ) -> tuple[int, int, int, float, float] | None:
        s = _cusum(self.s, _numeric_llr(self._scores(v)))
        self.s = s[-1]
        return self._crossing(s, i, _thresholds(log_arl, len(self.sorted)))

    def _crossing(self, s: np.ndarray, i: np.ndarray, h: np.ndarray
                  ) -> tuple[int, int, int, float, float] | None:
        """The first crossing of the CUSUM values ``s`` (a row per position ``i``), if any."""
        rows, cols = np.nonzero(s > h)
        if not rows.size:
            return None
        first = int(rows.min())
        col = int(cols[rows == first][np.argmax(s[first, cols[rows == first]])])
        return col, int(i[first]), self._left_zero(col, i[first]), float(s[first, col]), float(
            h[col])

    def _left_zero(self, col: int, at: int) -> int:
        """Where the CUSUM ``col`` crossing at ``at`` last left zero: the start of the kept
        values' suffix up to ``at`` with the largest summed log-likelihood ratio."""
        x, pos = self._kept(0, at)
        z = self._scores(x)
        llr = z * _LINEAR[col] + z * z * _SQUARE[col] + _CONSTANT[col]
        tail = np.cumsum(llr[::-1])[::-1]  # sum of llr from each value to the crossing
        return int(pos[int(np.argmax(tail))])

    def _shift(self, after: np.ndarray) -> float:
        if after.size < 2:
            return 0.0
        sd = float(self.ref_raw.std()) or 1.0
        return float(abs(after.mean() - self.ref_raw.mean()) / sd)


def _run_together(group: list[NumericFeature], log_arl: float
                  ) -> dict[int, tuple[int, int, int, float, float]] | None:
    """Run the pending values of watched numeric features as one matrix, when all of them came
    at the same positions (each event carried every feature): per-feature results as
    ``WatchedFeature.flush`` gives them, by the feature's place in ``group``; None when they
    differ."""
    idx = group[0].idx
    if any(f.idx != idx for f in group):
        return None
    try:
        v = np.array([f.vals for f in group], dtype=float)  # (features, values)
    except (TypeError, ValueError):
        return None
    if np.isnan(v).any():
        return None
    i = np.array(idx, dtype=np.int64)
    ranks = np.empty_like(v)
    for j, f in enumerate(group):
        f.vals.clear()  # in place: the monitor's routes hold these lists
        f.idx.clear()
        f._keep(v[j], i)
        ranks[j] = f._ranks(v[j])
    n = np.array([len(f.sorted) for f in group], dtype=float)[:, None]
    mean = np.array([f.z_mean for f in group])[:, None]
    sd = np.array([f.z_sd for f in group])[:, None]
    z = ((special.ndtri((ranks / 2 + 0.5) / (n + 1)) - mean) / sd).T  # (values, features)
    s = _cusum(np.array([f.s for f in group]), _numeric_llr(z))  # (values, features, 10)
    h = _thresholds(log_arl, n)  # (features, 10)
    crossed = np.nonzero((s > h).any(axis=(0, 2)))[0]
    found = {}
    for j in crossed.tolist():
        found[j] = group[j]._crossing(s[:, j], i, h[j])
    for j, f in enumerate(group):
        f.s = s[-1, j]
        f._grow(v[j])
        if j in found:
            f.restart()
    return found


class SequentialDriftMonitor(FeatureRouter):
    """Per-feature sequential drift of a stream of feature dicts; see the module's docstring.

    Missing values (absent, None, NaN, not a number) are skipped. After an alarm the feature's
    reference restarts with its next ``reference`` values (one change, one alert).
    """

    def __init__(self, kind: Literal["data", "prediction"] = "data", reference: int = 1000,
                 batch: int = 16, false_alarms_per_100k: float = 1.0) -> None:
        if kind not in ("data", "prediction"):
            raise ValueError(f"bad kind {kind!r}")
        if reference < 50 or batch < 1 or false_alarms_per_100k <= 0:
            raise ValueError("need reference >= 50, batch >= 1 and a budget > 0")
        self.kind, self.reference, self.batch = kind, reference, batch
        self.false_alarms_per_100k = false_alarms_per_100k
        self.every = batch
        super().__init__()

    @property
    def log_run_length(self) -> float:
        """ln of each watched feature's in-control run length (the budget split evenly)."""
        watched = sum(not f.trending for f in self._features.values())
        return log_run_length(watched, self.false_alarms_per_100k)

    @property
    def threshold(self) -> float:
        """The base CUSUM threshold (nats): a CUSUM stops at h = it + 2 ln KL, times
        1 + h / (KL n) against a reference of n values (``_thresholds``)."""
        return self.log_run_length + NUMERIC_CALIBRATION

    @property
    def unwatched(self) -> list[str]:
        """Features not watched because their reference trends (non-stationary by construction)."""
        return [f.name for f in self._features.values() if f.trending]

    def _new(self, name: str, categorical: bool) -> WatchedFeature:
        if categorical:
            return CategoryFeature(name, self.reference, self.batch)
        return NumericFeature(name, self.reference)

    def _check(self) -> list[Alarm]:
        log_arl, features = self.log_run_length, list(self._features.values())
        # The watched numeric features, when their values came together, run as one matrix.
        group = [f for f in features if isinstance(f, NumericFeature) and f.watching and f.vals]
        together = _run_together(group, log_arl) if len(group) > 1 else None
        ran = {id(f) for f in group} if together is not None else set()
        crossings = {id(group[j]): c for j, c in (together or {}).items()}
        found = []
        for feature in features:
            crossed = crossings.get(id(feature)) if id(feature) in ran else feature.flush(log_arl)
            if crossed:
                found.append((feature, *crossed))
        return [self._alarm(*f) for f in found]

    def _alarm(self, feature: WatchedFeature, col: int, index: int, start: int, stat: float,
               h: float) -> Alarm:
        after = feature.since(start)
        after = after[:max(1, index - start + 1)] if after.size else after
        since = min(start, index - RANK_SPAN)  # a span long enough to rank by
        moved = sorted(((f.moved(since), f.name) for f in self._features.values()
                        if f is not feature), reverse=True)
        also = tuple((name, round(shift, 3)) for shift, name in moved[:TOP] if shift > 0)
        if isinstance(feature, CategoryFeature):
            names = {c: name for name, c in feature.codes.items()}
            k = len(feature.p0)
            label = [names.get(c, "other") for c in range(k - 1)] + ["other"]
            codes = np.minimum(after.astype(np.intp), k - 1)
            q = np.bincount(codes, minlength=k) / max(1, len(after))
            before = {label[c]: round(float(feature.p0[c]), 4) for c in range(k)}
            now = {label[c]: round(float(q[c]), 4) for c in range(k)}
            direction = f"{label[col]} {'gained' if q[col] > feature.p0[col] else 'lost'}"
            return Alarm(self.kind, "glr", feature.name, stat, h, index, start, None,
                         direction=direction, shares_before=before, shares_after=now, moved=also)
        ref = feature.ref_raw
        name = NUMERIC_NAMES[col]
        direction = "up" if " up" in name else "down"
        if name.startswith("sd"):
            direction = f"sd {direction}"
        return Alarm(self.kind, "cusum", feature.name, stat, h, index, start, None,
                     direction=direction, before=(float(ref.mean()), float(ref.std())),
                     after=(float(after.mean()), float(after.std())) if after.size else None,
                     moved=also)
