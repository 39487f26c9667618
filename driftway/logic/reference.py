"""A feature the data-drift monitor watches: its pending values, its reference and its recent
values, common to the numeric CUSUMs (driftway.logic.sequential) and the category-mix GLR
(driftway.logic.category_mix), which each add their statistics."""

from __future__ import annotations

import math

import numpy as np

from driftway.logic.drift import _floats

GROW = 16  # the reference grows up to this many times its first size
RECENT = 4096  # raw values each feature keeps, to describe a change (a power of two)


class WatchedFeature:
    """One monitored feature: its pending values, reference and recent values; the statistics
    are a subclass's (sequential.NumericFeature, category_mix.CategoryFeature)."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.vals: list = []  # pending values (or category codes) ...
        self.idx: list[int] = []  # ... and their stream positions
        self.ref: list[np.ndarray] = []
        self.ref_n = 0
        self.trending = False
        self.recent = np.zeros(RECENT)  # raw values (codes), and positions, for alarms
        self.recent_idx = np.full(RECENT, -1, dtype=np.int64)
        self.seen = 0
        self.later: list[np.ndarray] = []  # watched values, to grow the reference (see flush)
        self.later_n = 0

    @property
    def watching(self) -> bool:
        return self.ref_n >= self.size and not self.trending

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
        start = self.seen & (RECENT - 1)
        if start + len(v) <= RECENT:
            self.recent[start:start + len(v)], self.recent_idx[start:start + len(v)] = v, i
        else:
            pos = (self.seen + np.arange(len(v))) & (RECENT - 1)
            self.recent[pos], self.recent_idx[pos] = v, i
        self.seen += len(v)

    def _kept(self, start: int, end: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        """The raw values kept from stream position ``start`` to ``end``, and their positions,
        oldest first."""
        keep = (self.recent_idx >= start) & (self.recent_idx <= end)
        order = np.argsort(self.recent_idx[keep], kind="stable")
        return self.recent[keep][order], self.recent_idx[keep][order]

    def since(self, start: int) -> np.ndarray:
        """The raw values kept from stream position ``start`` on, oldest first."""
        return self._kept(start)[0]

    def flush(self, log_arl: float) -> tuple[int, int, int, float, float] | None:
        """Run the pending values; (column, crossing position, change point, value, threshold)
        when a statistic crosses its threshold (column: the CUSUM, or the category)."""
        if not self.vals:
            return None
        v, i = _floats(self.vals), np.array(self.idx, dtype=np.int64)
        self.vals.clear()  # in place: the monitor's routes hold these lists
        self.idx.clear()
        v, i = self._present(v, i)
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
        found = self._test(v, i, log_arl)
        self._grow(v)
        if found:
            self.restart()
        return found

    def _present(self, v: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return v, i

    def _freeze(self, keep: bool = False) -> None:
        """The reference is complete (or grown, ``keep``): the statistics take it."""
        self.ref_raw = np.concatenate(self.ref)
        self._fit(self.ref_raw, keep)

    def moved(self, start: int) -> float:
        """How far this feature moved since ``start``: the largest standardised shift."""
        return self._shift(self.since(start)) if self.watching else 0.0

    def _fit(self, ref: np.ndarray, keep: bool) -> None:
        raise NotImplementedError

    def _test(self, v: np.ndarray, i: np.ndarray, log_arl: float
              ) -> tuple[int, int, int, float, float] | None:
        raise NotImplementedError

    def _shift(self, after: np.ndarray) -> float:
        raise NotImplementedError
