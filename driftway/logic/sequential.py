"""Sequential data drift: CUSUMs per feature against its reference, near the detection limit.

Each numeric feature's first ``reference`` values are its reference (later it grows with older
watched values, see ``_Feature._grow``, so its estimation error shrinks). Later values become
normal scores through the reference's mid-ranks (a skewed, heavy-tailed or discrete feature looks
N(0, 1) under no change, standardised by the reference's own scores) and feed ten one-sided
CUSUMs of log-likelihood ratios: mean shifts of +-0.25, 0.5, 1 and 2 sd, sd ratios 1.5 and 1/1.5.
A one-hot group (``field=value`` names, grouped by ``field``) feeds, per category (and "other",
the categories first seen after the reference), four Bernoulli CUSUMs whose alternatives multiply
the category's odds by 2, 1.4, 1/1.4 and 1/2. All CUSUMs share one base threshold ``h`` in nats,
from the false-alarm budget over all CUSUMs of all features (:func:`threshold`); a CUSUM whose
alternative carries information ``I < 1`` nat per event (its Kullback-Leibler divergence) stops at
``h + ln I`` (Siegmund: its in-control run length is about ``e^h / I``; numeric CUSUMs only).
``CALIBRATION`` is measured by simulation on stationary streams. Values are buffered
and the recursion runs vectorised every ``batch`` updates; the alarm's ``index`` is the position
where the CUSUM crossed, its ``change_point`` the position after the CUSUM last stood at zero.

A feature whose reference trends (rank correlation with arrival order above ``TREND``: a
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

from driftway.logic.drift import Alarm, FeatureRouter, _floats

MEAN_SHIFTS = (0.25, 0.5, 1.0, 2.0)  # sd; each up and down
SD_RATIOS = (1.5, 1 / 1.5)
ODDS_RATIOS = (2.0, 1.4, 1 / 1.4, 0.5)  # categorical: a category's odds multiplied by these
TREND = 0.5  # |rank correlation with arrival order| of a reference that is not watched
GROW = 16  # the reference grows up to this many times its first size
RECENT = 4096  # raw values each feature keeps, to describe a change (a power of two)
RANK_SPAN = 100  # other features are ranked over at least this many events before the alarm
TOP = 3  # features listed as "also moved" in an alarm
# h = log(n_cusums * 1e5 / budget) + CALIBRATION, numeric CUSUMs then + ln min(1, KL). Measured on
# tests/unit/logic/test_drift.py's mixed stationary streams (3 x 100,000 events, 7 features) at a
# budget of 20: 22 false alarms per 100,000 with 0 and the offsets on categorical CUSUMs too (over
# budget), 3.3 with 0.5 and numeric offsets only; at a budget of 1, 1 in 400,000 (early, on the
# category). test_sequential_false_alarm_rate_holds_its_budget_on_mixed_stationary_features
# holds it.
CALIBRATION = 0.5


def threshold(n_cusums: int, false_alarms_per_100k: float) -> float:
    """The CUSUM threshold in nats for a budget over ``n_cusums`` CUSUMs together.

    >>> round(threshold(200, 1.0), 2)
    17.31
    """
    return math.log(max(1, n_cusums) * 100_000 / false_alarms_per_100k) + CALIBRATION


def _information_offsets(kl: np.ndarray) -> np.ndarray:
    """Per-CUSUM threshold offsets ``ln min(1, KL)``: a CUSUM of a small alternative drifts
    slowly, so it reaches ``h`` ``1 / KL`` times more rarely than Lorden's bound allows for."""
    return np.log(np.minimum(1.0, kl))


_NUMERIC_KL = np.array([m * m / 2 for m in MEAN_SHIFTS for _ in (1, -1)]
                       + [r * r / 2 - 0.5 - math.log(r) for r in SD_RATIOS])


def _numeric_llr(z: np.ndarray) -> np.ndarray:
    """Per-value log-likelihood ratios of the numeric alternatives: shape (len(z), 10)."""
    d = np.array([s * m for m in MEAN_SHIFTS for s in (1, -1)])
    mean = z[:, None] * d - d * d / 2
    r = np.array(SD_RATIOS)
    var = -np.log(r) + (z * z)[:, None] / 2 * (1 - 1 / (r * r))
    return np.hstack((mean, var))


NUMERIC_NAMES = tuple(f"mean {'up' if s > 0 else 'down'} {m:g} sd"
                      for m in MEAN_SHIFTS for s in (1, -1)) + ("sd up", "sd down")


def _cusum(s0: np.ndarray, llr: np.ndarray) -> np.ndarray:
    """S_t = max(0, S_{t-1} + llr_t) for every column, vectorised: C_t - min(-S_0, min C_s)."""
    c = np.cumsum(llr, axis=0)
    return c - np.minimum(np.minimum.accumulate(c, axis=0), -s0)


class _Feature:
    """One monitored feature (numeric, or a one-hot group): buffer, reference and CUSUMs."""

    def __init__(self, name: str, categorical: bool, size: int) -> None:
        self.name, self.categorical, self.size = name, categorical, size
        self.vals: list = []  # pending values (or category codes) ...
        self.idx: list[int] = []  # ... and their stream positions
        self.codes: dict[str, int] = {}
        self.ref: list[np.ndarray] = []
        self.ref_n = 0
        self.trending = False
        self.recent = np.zeros(RECENT)  # raw values (codes), and positions, for alarms
        self.recent_idx = np.full(RECENT, -1, dtype=np.int64)
        self.seen = 0
        self.s = self.zero = np.empty(0)
        self.later: list[np.ndarray] = []  # watched values, to grow the reference (see flush)
        self.later_n = 0

    @property
    def watching(self) -> bool:
        return self.ref_n >= self.size and not self.trending

    @property
    def n_cusums(self) -> int:
        if self.categorical:
            return len(ODDS_RATIOS) * (max(2, len(self.codes)) + 1)
        return len(NUMERIC_NAMES)

    def restart(self) -> None:
        self.ref, self.ref_n, self.trending, self.later, self.later_n = [], 0, False, [], 0

    def _grow(self, v: np.ndarray) -> None:
        """Grow the reference: when the watched values outnumber it twice, all but the last
        ``size`` of them join it (up to ``GROW`` times its first size), so its estimation error
        shrinks; the newest stay out, so a change under way is not absorbed."""
        if self.ref_n >= GROW * self.size:
            return
        self.later.append(v)
        self.later_n += len(v)
        lag = self.size // 2
        if self.later_n < self.ref_n // 2 + lag:
            return
        later = np.concatenate(self.later)
        self.ref.append(later[:-lag])
        self.ref_n += len(later) - lag
        self.later, self.later_n = [later[-lag:]], lag
        self._freeze(keep=True)

    def _keep(self, v: np.ndarray, i: np.ndarray) -> None:
        pos = (self.seen + np.arange(len(v))) & (RECENT - 1)
        self.recent[pos], self.recent_idx[pos] = v, i
        self.seen += len(v)

    def since(self, start: int) -> np.ndarray:
        """The raw values kept from stream position ``start`` on."""
        return self.recent[self.recent_idx >= start]

    def _freeze(self, keep: bool = False) -> None:
        ref = np.concatenate(self.ref)
        self.ref_raw = ref
        if self.categorical:
            k = max(2, len(self.codes)) + 1  # the last code: categories first seen later
            counts = np.bincount(ref.astype(np.intp), minlength=k)[:k]
            self.p0 = (counts + 0.5) / (counts.sum() + 0.5 * k)
            odds = self.p0 / (1 - self.p0)
            p1 = np.concatenate([odds * r / (1 + odds * r) for r in ODDS_RATIOS])
            p0 = np.tile(self.p0, len(ODDS_RATIOS))
            self.llr_hit, self.llr_miss = np.log(p1 / p0), np.log((1 - p1) / (1 - p0))
            # Lorden's bound as it is: on rare categories the offsets gave 3 false alarms in
            # 300,000 stationary events at a budget of 1 (Siegmund's is for small steps).
            self.offsets = np.zeros(len(p1))
        else:
            order = np.argsort(np.argsort(ref, kind="stable"))
            rho = np.corrcoef(order, np.arange(len(ref)))[0, 1] if ref.std() > 0 else 0.0
            self.trending = bool(abs(rho) > TREND)
            self.sorted = np.sort(ref)
            z = self._scores(ref, raw=True)
            self.z_mean, self.z_sd = float(z.mean()), float(z.std()) or 1.0
            self.offsets = _information_offsets(_NUMERIC_KL)
        if keep:
            return
        self.s = np.zeros(len(self.llr_hit) if self.categorical else len(NUMERIC_NAMES))
        self.zero = np.zeros(len(self.s), dtype=np.int64)  # position where each CUSUM was 0

    def _scores(self, v: np.ndarray, raw: bool = False) -> np.ndarray:
        n = len(self.sorted)
        rank = (np.searchsorted(self.sorted, v, "left") + np.searchsorted(self.sorted, v, "right"))
        z = special.ndtri((rank / 2 + 0.5) / (n + 1))
        return z if raw else (z - self.z_mean) / self.z_sd

    def _llr(self, v: np.ndarray) -> np.ndarray:
        if not self.categorical:
            return _numeric_llr(self._scores(v))
        k = len(self.p0)
        codes = np.minimum(v.astype(np.intp), k - 1)
        hit = np.zeros((len(v), k), dtype=bool)
        hit[np.arange(len(v)), codes] = True
        hit = np.tile(hit, len(ODDS_RATIOS))
        return np.where(hit, self.llr_hit, self.llr_miss)

    def flush(self, h: float) -> tuple[int, int, int, float] | None:
        """Run the pending values; (CUSUM, crossing position, change point, value) on a crossing."""
        if not self.vals:
            return None
        v, i = _floats(self.vals), np.array(self.idx, dtype=np.int64)
        self.vals.clear()  # in place: the monitor's routes hold these lists
        self.idx.clear()
        if not self.categorical:
            v, i = v[~np.isnan(v)], i[~np.isnan(v)]
        self._keep(v, i)
        if self.ref_n < self.size:
            take = min(self.size - self.ref_n, len(v))
            self.ref.append(v[:take])
            self.ref_n += take
            v, i = v[take:], i[take:]
            if self.ref_n == self.size:
                self._freeze()
        if not len(v) or not self.watching:
            return None
        s = _cusum(self.s, self._llr(v))
        self._grow(v)
        rows, cols = np.nonzero(s > h + self.offsets)
        if rows.size:
            first = int(rows.min())
            col = int(cols[rows == first][np.argmax(s[first, cols[rows == first]])])
            zeros = np.nonzero(s[:first, col] == 0)[0]
            start = int(i[zeros[-1]]) if zeros.size else int(self.zero[col])
            self.restart()
            return col, int(i[first]), start + 1, float(s[first, col])
        self.s = s[-1]
        at_zero = s == 0
        any_zero = at_zero.any(axis=0)
        last = len(v) - 1 - np.argmax(at_zero[::-1], axis=0)
        self.zero = np.where(any_zero, i[last], self.zero)
        return None

    def moved(self, start: int) -> float:
        """How far this feature moved since ``start``: the largest standardised shift."""
        if not self.watching:
            return 0.0
        after = self.since(start)
        if self.categorical:
            k = len(self.p0)
            if not after.size:
                return 0.0
            q = np.bincount(np.minimum(after.astype(np.intp), k - 1), minlength=k) / after.size
            return float(np.max(np.abs(q - self.p0) / np.sqrt(self.p0 * (1 - self.p0))))
        if after.size < 2:
            return 0.0
        sd = float(self.ref_raw.std()) or 1.0
        return float(abs(after.mean() - self.ref_raw.mean()) / sd)


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
    def threshold(self) -> float:
        """The shared CUSUM threshold (nats) for the budget over all CUSUMs of all features."""
        return threshold(sum(f.n_cusums for f in self._features.values() if not f.trending),
                         self.false_alarms_per_100k)

    @property
    def unwatched(self) -> list[str]:
        """Features not watched because their reference trends (non-stationary by construction)."""
        return [f.name for f in self._features.values() if f.trending]

    def _new(self, name: str, categorical: bool) -> _Feature:
        return _Feature(name, categorical, self.reference)

    def _check(self) -> list[Alarm]:
        h, found = self.threshold, []
        for feature in self._features.values():
            crossed = feature.flush(h)
            if crossed:
                found.append((feature, *crossed))
        return [self._alarm(h, *f) for f in found]

    def _alarm(self, h: float, feature: _Feature, col: int, index: int, start: int,
               stat: float) -> Alarm:
        h += float(feature.offsets[col])  # this CUSUM's own threshold
        after = feature.since(start)
        after = after[:max(1, index - start + 1)] if after.size else after
        since = min(start, index - RANK_SPAN)  # a span long enough to rank by
        moved = sorted(((f.moved(since), f.name) for f in self._features.values()
                        if f is not feature), reverse=True)
        also = tuple((name, round(shift, 3)) for shift, name in moved[:TOP] if shift > 0)
        if feature.categorical:
            names = {c: name for name, c in feature.codes.items()}
            k = len(feature.p0)
            label = [names.get(c, "other") for c in range(k - 1)] + ["other"]
            codes = np.minimum(after.astype(np.intp), k - 1)
            q = np.bincount(codes, minlength=k) / max(1, len(after))
            before = {label[c]: round(float(feature.p0[c]), 4) for c in range(k)}
            now = {label[c]: round(float(q[c]), 4) for c in range(k)}
            cat, up = label[col % k], ODDS_RATIOS[col // k] > 1
            direction = f"{cat} {'gained' if up else 'lost'}"
            return Alarm(self.kind, "cusum", feature.name, stat, h, index, start, None,
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
