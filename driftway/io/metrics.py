"""What a processor on the runtime reports about itself: records and their rate, dead letters,
batches and commits with their times, and its input's lag, logged every
``processing.metrics_log_seconds``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Metrics:
    """What a runtime did since its last report (logged every ``log_every`` seconds): records
    and their rate, dead letters, batches and commits with their mean and longest times, and
    the lag of its input at the report.

    >>> m = Metrics(started=0.0)
    >>> m.batch(500, 0.004); m.batch(300, 0.002); m.commit(0.003)
    >>> print(m.line("features", lag=12, now=2.0))  # doctest: +NORMALIZE_WHITESPACE
    features: 800 records (400/s), 0 dead letters, 2 batches (mean 3.0 ms, max 4.0 ms),
    1 commits (mean 3.0 ms, max 3.0 ms), lag 12, busy 0 %
    """

    records: int = 0
    dead_letters: int = 0
    batches: int = 0
    batch_seconds: float = 0.0
    batch_max: float = 0.0
    commits: int = 0
    commit_seconds: float = 0.0
    commit_max: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def batch(self, records: int, seconds: float) -> None:
        self.records += records
        self.batches += 1
        self.batch_seconds += seconds
        self.batch_max = max(self.batch_max, seconds)

    def commit(self, seconds: float) -> None:
        self.commits += 1
        self.commit_seconds += seconds
        self.commit_max = max(self.commit_max, seconds)

    def line(self, name: str, lag: int | None, now: float | None = None) -> str:
        elapsed = max(1e-9, (time.monotonic() if now is None else now) - self.started)
        busy = self.batch_seconds + self.commit_seconds

        def times(n: int, total: float, longest: float) -> str:
            return f"mean {1000 * total / max(1, n):.1f} ms, max {1000 * longest:.1f} ms"

        return (f"{name}: {self.records} records ({self.records / elapsed:.0f}/s), "
                f"{self.dead_letters} dead letters, {self.batches} batches "
                f"({times(self.batches, self.batch_seconds, self.batch_max)}), {self.commits} "
                f"commits ({times(self.commits, self.commit_seconds, self.commit_max)}), "
                f"lag {'?' if lag is None else lag}, busy {100 * busy / elapsed:.0f} %")
