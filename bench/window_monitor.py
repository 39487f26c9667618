"""The data-drift monitor Driftway had before its sequential tests (issue 13): window tests.

Kept here, outside the package, as bench/drift.py's "before" column (``window_ks``): each
feature's first ``window`` values are its reference, its last ``window`` values are tested
against it every ``check_every`` events (Kolmogorov-Smirnov or PSI for a number, chi-square for a
one-hot group), at a level that splits the false-alarm budget over checks and features. The
product uses driftway.logic.sequential.SequentialDriftMonitor; both route features through
driftway.logic.drift.FeatureRouter.

>>> import random
>>> rng = random.Random(7)
>>> monitor = DataDriftMonitor(window=200, check_every=50)
>>> alarms = []
>>> for i in range(3000):
...     x = rng.gauss(1.5 if i >= 1500 else 0.0, 1.0)
...     alarms += monitor.update({"x": x, f"city={rng.choice('ab')}": 1.0})
>>> [(a.kind, a.detector, a.feature) for a in alarms]
[('data', 'ks', 'x')]
>>> 1500 < alarms[0].index <= 1500 + 200 + 50, abs(alarms[0].change_point - 1501) < 50
(True, True)
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import special

from driftway.logic.drift import Alarm, FeatureRouter, _change_start, _floats

PSI_BINS = 10  # reference-quantile bins of the PSI test and of the change-point estimate


class _Column:
    """One monitored feature: values pending since the last check, reference, current window."""

    def __init__(self, name: str, categorical: bool, window: int) -> None:
        self.name, self.categorical = name, categorical
        self.vals: list = []  # values (or category codes) since the last check ...
        self.idx: list[int] = []  # ... and their stream positions
        self.codes: dict[str, int] = {}  # category -> code, in order of appearance
        self.ref = np.empty(window)
        self.ref_n = 0
        self.cur = np.empty(window)  # ring buffer of the current window
        self.cur_idx = np.empty(window, dtype=np.int64)
        self.cur_n = 0  # values since the current window (re)started
        self.ref_sorted = self.edges = self.log_p = self.ref_counts = np.empty(0)

    @property
    def ready(self) -> bool:
        return self.ref_n == len(self.ref) and self.cur_n >= len(self.cur)

    def flush(self) -> None:
        """Move pending values into the reference (until full), then into the current window."""
        if not self.vals:
            return
        v, i = _floats(self.vals), np.array(self.idx, dtype=np.int64)
        self.vals.clear()  # in place: update() holds these lists
        self.idx.clear()
        if not self.categorical and np.isnan(v).any():
            v, i = v[~np.isnan(v)], i[~np.isnan(v)]
        w = len(self.ref)
        if self.ref_n < w:
            take = min(w - self.ref_n, len(v))
            self.ref[self.ref_n:self.ref_n + take] = v[:take]
            self.ref_n += take
            if self.ref_n == w:
                self._freeze()
            v, i = v[take:], i[take:]
        total = len(v)
        v, i = v[-w:], i[-w:]
        start = (self.cur_n + total - len(v)) % w
        first = min(w - start, len(v))
        self.cur[start:start + first], self.cur_idx[start:start + first] = v[:first], i[:first]
        rest = len(v) - first
        self.cur[:rest], self.cur_idx[:rest] = v[first:], i[first:]
        self.cur_n += total

    def current(self, ring: np.ndarray | None = None) -> np.ndarray:
        """The current window's values (or ``ring``'s entries, e.g. positions), oldest first."""
        ring = self.cur if ring is None else ring
        s = self.cur_n % len(ring)
        return np.concatenate((ring[s:], ring[:s]))

    def restart(self) -> None:
        """Start a new reference with the next values."""
        self.ref_n = self.cur_n = 0

    def bins(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values as bin numbers, and the reference's log-probabilities of the bins (smoothed)."""
        if self.categorical:
            codes = values.astype(np.intp)
            counts = np.zeros(max(len(self.codes), len(self.ref_counts)))
            counts[:len(self.ref_counts)] = self.ref_counts
            return codes, np.log((counts + 0.5) / (counts.sum() + 0.5 * len(counts)))
        return np.searchsorted(self.edges, values, side="right"), self.log_p

    def _freeze(self) -> None:
        if self.categorical:
            self.ref_counts = np.bincount(self.ref.astype(np.intp)).astype(float)
            return
        w = len(self.ref)
        self.ref_sorted = np.sort(self.ref)
        low = self.ref_sorted[0]
        edges = np.unique(self.ref_sorted[np.arange(1, PSI_BINS) * w // PSI_BINS])
        edges = edges[edges > low]
        if not edges.size:  # (nearly) constant reference: below, at and above its value
            edges = np.array([low, np.nextafter(low, np.inf)])
        self.edges = edges
        hist = np.bincount(np.searchsorted(edges, self.ref, side="right"), minlength=edges.size + 1)
        self.log_p = np.log((hist + 0.5) / (w + 0.5 * hist.size))


def _ks(ref_sorted: np.ndarray, values: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Two-sample KS: D, its critical value at alpha and p (asymptotic, Stephens' correction)."""
    n, m = len(ref_sorted), len(values)
    both = np.concatenate((ref_sorted, np.sort(values)))
    order = np.argsort(both, kind="stable")  # merges the two sorted runs in linear time
    gap = np.cumsum(np.where(order < n, m, -n))  # n * m * (F_ref - F_current), exactly
    ordered = both[order]
    ends = np.append(ordered[1:] != ordered[:-1], True)  # the ECDFs step after the last of ties
    d = float(np.abs(gap[ends]).max()) / (n * m)
    root = math.sqrt(n * m / (n + m))
    factor = root + 0.12 + 0.11 / root
    return d, float(special.kolmogi(alpha)) / factor, float(special.kolmogorov(factor * d))


def _psi(col: _Column, values: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """PSI over reference-quantile bins; n_eff * PSI is asymptotically chi-square(bins - 1)."""
    bins, log_p = col.bins(values)
    q = np.bincount(bins, minlength=len(log_p)) + 0.5
    log_q = np.log(q / q.sum())
    psi = float(((np.exp(log_q) - np.exp(log_p)) * (log_q - log_p)).sum())
    scale = 1 / len(col.ref) + 1 / len(values)
    df = len(log_p) - 1
    return psi, float(special.chdtri(df, alpha)) * scale, float(special.chdtrc(df, psi / scale))


def _chi2(col: _Column, codes: np.ndarray, alpha: float, min_count: int
          ) -> tuple[float, float, float]:
    """Chi-square test of homogeneity, reference vs current category counts.

    Categories unseen in the reference, and those expected fewer than ``min_count`` times in
    either sample, share an "other" bin; an "other" bin itself too small joins the smallest bin.
    """
    k = max(len(col.ref_counts), int(codes.max()) + 1)
    r = np.zeros(k)
    r[:len(col.ref_counts)] = col.ref_counts
    c = np.bincount(codes, minlength=k).astype(float)
    low = min(r.sum(), c.sum()) / (r.sum() + c.sum())  # expected count = low * column total
    keep = (r > 0) & ((r + c) * low >= min_count)
    rb, cb = r[keep], c[keep]
    other = np.array([r[~keep].sum(), c[~keep].sum()])
    if other.sum() * low >= min_count or (other.sum() and not rb.size):
        rb, cb = np.append(rb, other[0]), np.append(cb, other[1])
    elif other.sum():
        j = int(np.argmin(rb + cb))
        rb[j], cb[j] = rb[j] + other[0], cb[j] + other[1]
    if rb.size < 2:
        return 0.0, math.inf, 1.0
    table = np.vstack((rb, cb))
    expected = np.outer(table.sum(1), table.sum(0)) / table.sum()
    x2 = float(((table - expected) ** 2 / expected).sum())
    df = rb.size - 1
    return x2, float(special.chdtri(df, alpha)), float(special.chdtrc(df, x2))


class DataDriftMonitor(FeatureRouter):
    """Per-feature drift of a stream of feature dicts against a reference window.

    Each feature's first ``window`` values are its reference; then its last ``window`` values
    are its current window. Missing values (absent, None, NaN or not a number) are skipped, not
    zeros, so a feature first seen late gets its reference from its own first ``window`` values.
    Every ``check_every`` updates, each feature whose current window is full of post-reference
    values is tested: numeric ones by a two-sample KS test (or PSI over reference deciles), one-hot
    groups (``field=value`` names with a truthy value, grouped by ``field``) by a chi-square test
    of category counts. Values are buffered between checks, so per update it is list appends.

    False-alarm budget: ``alpha = false_alarms_per_100k / 1e5 * check_every / n_features``, a
    Bonferroni split over the checks in 100,000 updates and over the features seen so far (one
    appearing later lowers it for all). Consecutive windows overlap, so the tests are positively
    correlated and the budget conservative: 21 stationary features gave 0.5 (KS) and 0.7 (PSI)
    false alarms per 100,000 updates at the default budget of 1.

    One change, one alert: the alarmed feature's reference restarts with its next ``window``
    values, so it can alarm again after ``2 * window`` of its values. (A reference taken from the
    current window, even from the estimated change point on, holds pre-change values and alarmed
    a second time on the same change.) The other features carry on.

    ``change_point`` is the maximum-likelihood start of a changed suffix of the current window:
    values are binned (reference deciles, or categories) and the suffix maximising the summed
    log-ratio of its own bin frequencies to the reference's is taken, so it never precedes the
    current window. For a +1 sd shift it lands within about 20 updates of the truth.
    """

    def __init__(self, kind: Literal["data", "prediction"] = "data", window: int = 1000,
                 check_every: int = 250, false_alarms_per_100k: float = 1.0,
                 numeric_test: Literal["ks", "psi"] = "ks", min_count: int = 5) -> None:
        if kind not in ("data", "prediction") or numeric_test not in ("ks", "psi"):
            raise ValueError(f"bad kind {kind!r} or numeric_test {numeric_test!r}")
        if window < 10 or check_every < 1 or false_alarms_per_100k <= 0 or min_count < 1:
            raise ValueError("need window >= 10, check_every >= 1, a budget > 0, min_count >= 1")
        self.kind = kind
        self.window = window
        self.check_every = check_every
        self.false_alarms_per_100k = false_alarms_per_100k
        self.numeric_test = numeric_test
        self.min_count = min_count
        self.every = check_every
        super().__init__()

    @property
    def alpha(self) -> float:
        """The per-test significance level: the budget split over checks and features."""
        return self.false_alarms_per_100k / 100_000 * self.check_every / max(1, len(self._features))

    def _new(self, name: str, categorical: bool) -> _Column:
        return _Column(name, categorical, self.window)

    def _check(self) -> list[Alarm]:
        alpha, alarms = self.alpha, []
        for col in self._features.values():
            col.flush()
            if not col.ready:
                continue
            values = col.current()
            if col.categorical:
                detector = "chi2"
                stat, threshold, p = _chi2(col, values.astype(np.intp), alpha, self.min_count)
            elif self.numeric_test == "ks":
                detector = "ks"
                stat, threshold, p = _ks(col.ref_sorted, values, alpha)
            else:
                detector = "psi"
                stat, threshold, p = _psi(col, values, alpha)
            if stat <= threshold:
                continue
            start = int(col.current(col.cur_idx)[_change_start(*col.bins(values))])
            col.restart()
            alarms.append(Alarm(self.kind, detector, col.name, stat, threshold, self.n, start, p))
        return alarms
