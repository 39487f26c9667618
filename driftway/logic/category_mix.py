"""The category-mix test of the data-drift monitor (driftway.logic.sequential): for each window
length ``w`` (``WINDOWS`` lengths, geometric from one batch to ``LONGEST`` events), a two-sample
multinomial generalised likelihood ratio of the last ``w`` events' category counts against the
reference's, all categories at once (twice it is chi-square with categories - 1 degrees of
freedom under no change, whatever the reference's size), alarming above a threshold per window
(:func:`mix_threshold`: lower for the long windows, which find the small changes).

>>> windows = MixWindows(batch=16)
>>> windows.restart(categories=3, keep=False)
>>> reference = np.array([500.0, 500.0, 0.5])  # two categories, and "seen later"
>>> same = [windows.test(np.array([0, 1] * 8), np.arange(16 * t, 16 * t + 16), reference,
...                      log_run_length=14.0) for t in range(50)]
>>> any(same)
False
>>> moved = [windows.test(np.array([0] * 16), np.arange(16 * t, 16 * t + 16), reference,
...                       log_run_length=14.0) for t in range(50, 60)]
>>> stat, h, start = next(m for m in moved if m)
>>> stat > h, start >= 800
(True, True)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from driftway.logic.drift import _change_start
from driftway.logic.reference import WatchedFeature

LONGEST = 8192  # events in the longest window
WINDOWS = 19  # window lengths, geometric from one batch to LONGEST
# MIX_CALIBRATION 1.5 / 2 / 2.5 / 3 gave 0.085 / 0.045 / 0.025 / 0.010 false alarms per feature
# and 100,000 events on a 4-way category (0.4 / 0.3 / 0.2 / 0.1), 0.060 / 0.045 / 0.020 / 0.010 on
# an 8-way with rare ones (0.3 ... 0.02), 0.060 / 0.025 / 0.020 / 0.015 on a 2-way (0.7 / 0.3)
# (200 streams each; the budget is 0.091 per feature at 11 features). With one level for all
# windows (no share by length), 2.5 gave about 0.08 on 2-, 3-, 4- and 8-way mixes, and higher
# thresholds on the long windows.
MIX_CALIBRATION = 2.0


def mix_threshold(log_arl: float, categories: int, batch: int, windows: np.ndarray
                  ) -> np.ndarray:
    """The category-mix GLR's threshold per window (lengths ``windows``, in batches): its
    chi-square tail (a gamma of ``(categories - 1) / 2``) at a share of ``batch`` checks' part
    of the run length that grows with the window. A window of ``w`` events makes about one
    independent test per ``w`` events, so with one level for all the shortest windows would
    spend most of the budget; a share proportional to ``w`` gives each window the same part,
    and the long windows, which find the small changes, a lower threshold.

    >>> h = mix_threshold(math.log(11 * 100_000), 4, 16, np.array([1, 32, 512]))  # 11 features
    >>> [round(float(x), 1) for x in h]
    [19.9, 16.4, 13.5]
    """
    share = windows / windows.max() * len(windows)
    level = np.minimum(0.5, batch * math.exp(-log_arl - MIX_CALIBRATION) * share)
    return special.gammainccinv(max(1, categories - 1) / 2, level)


def _xlogx(x: np.ndarray) -> np.ndarray:
    return special.xlogy(x, x)


def glr(window: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Two-sample multinomial log-likelihood ratios of each row of ``window`` counts against the
    reference counts ``ref``: sum N ln(N / m) + R ln(R / n) - (N + R) ln((N + R) / (m + n))."""
    m, n = window.sum(axis=1), ref.sum()
    return (_xlogx(window).sum(axis=1) + _xlogx(ref).sum() - _xlogx(window + ref).sum(axis=1)
            - _xlogx(m) - _xlogx(n) + _xlogx(m + n))


class MixWindows:
    """The category counts of every window, from cumulative counts kept at the end of each
    batch (a ring of ``LONGEST // batch`` of them), and the test of the windows against a
    reference; the thresholds are kept while the budget, the categories and the batch stay."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        flushes = max(2, LONGEST // batch)
        self.lags = np.unique(np.geomspace(1, flushes, WINDOWS).round().astype(np.intp))
        self.past = np.zeros((flushes + 1, 0))
        self.past_at = np.zeros(flushes + 1, dtype=np.int64)
        self.flushes = 0
        self._h: tuple[tuple[float, int, int] | None, np.ndarray] = (None, np.empty(0))

    @property
    def categories(self) -> int:
        return self.past.shape[1]

    def restart(self, categories: int, keep: bool) -> None:
        """A new reference: the windows start again, unless ``keep`` and the categories are
        the same (a grown reference)."""
        if not keep or self.past.shape[1] != categories:
            self.past = np.zeros((len(self.past), categories))
            self.flushes = 0

    def test(self, codes: np.ndarray, i: np.ndarray, ref_counts: np.ndarray,
             log_run_length: float) -> tuple[float, float, int] | None:
        """Add a batch's category codes (at stream positions ``i``) and test every window
        against ``ref_counts``: the window furthest over its threshold, as (statistic,
        threshold, the window's first position), or None."""
        k, size = self.past.shape[1], len(self.past)
        if not self.flushes:  # the first window starts with these values
            self.past_at[0] = i[0] - 1
        total = self.past[self.flushes % size] + np.bincount(codes, minlength=k)
        self.flushes += 1
        self.past[self.flushes % size], self.past_at[self.flushes % size] = total, i[-1]
        lags = self.lags[self.lags <= self.flushes]
        g = glr(total - self.past[(self.flushes - lags) % size], ref_counts)
        key = (log_run_length, int(np.sum(ref_counts[:-1] > 0)), self.batch)
        if self._h[0] != key:
            self._h = key, mix_threshold(*key, self.lags)
        h = self._h[1][:len(lags)]
        best = int(np.argmax(g - h))
        if g[best] <= h[best]:
            return None
        return (float(g[best]), float(h[best]),
                int(self.past_at[(self.flushes - lags[best]) % size]) + 1)


class CategoryFeature(WatchedFeature):
    """A one-hot group: category codes, the category-mix GLR of driftway.logic.category_mix."""

    def __init__(self, name: str, size: int, batch: int) -> None:
        super().__init__(name, size)
        self.codes: dict[str, int] = {}
        self.windows = MixWindows(batch)

    def _fit(self, ref: np.ndarray, keep: bool) -> None:
        k = max(2, len(self.codes)) + 1  # the last code: categories first seen later
        counts = np.bincount(ref.astype(np.intp), minlength=k)[:k].astype(float)
        counts[-1] = max(0.5, float(np.sum(counts[:-1] == 1)))  # Good-Turing: seen once
        self.p0 = counts / counts.sum()
        self.ref_counts = counts
        self.windows.restart(k, keep)  # (new categories: the windows start again)

    def _test(self, v: np.ndarray, i: np.ndarray, log_arl: float
              ) -> tuple[int, int, int, float, float] | None:
        k = self.windows.categories
        found = self.windows.test(np.minimum(v.astype(np.intp), k - 1), i, self.ref_counts,
                                  log_arl)
        if found is None:
            return None
        stat, h, start = found
        # the maximum-likelihood start of the changed suffix, looked for over twice the window
        back, at = self._kept(max(0, 2 * start - int(i[-1])))
        if back.size:
            # (a category the reference never had: half a count, not log 0, which made every
            # suffix with one in it infinitely likely and the start the window's first event)
            p0 = np.maximum(self.p0, 0.5 / float(self.ref_counts.sum()))
            start = int(at[_change_start(np.minimum(back.astype(np.intp), k - 1), np.log(p0))])
        after = np.minimum(self.since(start).astype(np.intp), k - 1)
        q = np.bincount(after, minlength=k) / max(1, after.size)
        col = int(np.argmax(self._share_shifts(q)))
        return col, int(i[-1]), start, stat, h

    def _share_shifts(self, q: np.ndarray) -> np.ndarray:
        """How far each category's share moved from the reference's, in its binomial sd; a
        category the reference never had (share 0) gets the sd of one in the reference, not a
        division by zero (which made NaN, and argmax named that category)."""
        floor = 1.0 / max(1.0, float(self.ref_counts.sum()))
        return np.abs(q - self.p0) / np.sqrt(np.maximum(self.p0 * (1 - self.p0), floor))

    def _shift(self, after: np.ndarray) -> float:
        if not after.size:
            return 0.0
        k = len(self.p0)
        q = np.bincount(np.minimum(after.astype(np.intp), k - 1), minlength=k) / after.size
        return float(np.max(self._share_shifts(q)))
