"""The adaptation policy: drift starts a challenger, a test promotes it, degradation rolls back.

Pure state machine, driven by the learner in the training topic's order:

- **steady** — the champion serves. Concept drift on the champion starts a challenger (trained on
  the examples since the estimated change point), deployed as a shadow. Drift on the champion
  while a challenger or a predecessor is judged drops that shadow and starts a new challenger
  from the new change point.
- **challenging** — champion and challenger answer the same events; each label gives a paired loss
  difference d = loss(champion) − loss(challenger). At every ``min_labels`` pairs (look k = 1, 2,
  …) a one-sided paired z-test asks whether mean(d) > 0 at level α/2^k, so the chance of a false
  promotion over all looks stays below α (Bonferroni over looks: Σ α/2^k < α). Significant →
  **promote**; after ``max_looks`` looks without it the challenger is dropped.
- **probation** — the promoted version serves, its predecessor is kept as a shadow; the same test
  in the other direction (is the predecessor better?) → **rollback**. After ``max_looks`` looks
  without it, the predecessor is retired and the policy is steady again.

Losses: log loss of the served probability for classifiers (0/1 error when there is none),
squared error for regressors.

>>> p = Policy(alpha=0.01, min_labels=200, max_looks=5)
>>> p.on_champion_drift(offset=10)
'start_challenger'
>>> p.challenger_started(champion=1, challenger=2)
>>> import random
>>> rng = random.Random(0)
>>> decision = None
>>> for _ in range(400):
...     decision = decision or p.observe({1: rng.random() < 0.4, 2: rng.random() < 0.1})
>>> decision.action, decision.look
('promote', 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

State = Literal["steady", "challenging", "probation"]


@dataclass(frozen=True)
class Decision:
    """What the policy decided, and the evidence."""

    action: Literal["promote", "rollback", "drop_challenger", "retire_predecessor"]
    incumbent: int
    candidate: int
    look: int
    pairs: int
    mean_difference: float
    z: float
    p_value: float
    alpha: float

    @property
    def reason(self) -> str:
        better = {"promote": "challenger better", "rollback": "predecessor better",
                  "drop_challenger": "challenger not better",
                  "retire_predecessor": "no degradation"}[self.action]
        return (f"{better}: paired loss difference {self.mean_difference:+.4f} over "
                f"{self.pairs} labels, z={self.z:.2f}, p={self.p_value:.2g} "
                f"(level {self.alpha:.2g} at look {self.look})")


def loss(correct_or_loss: bool | float) -> float:
    """A loss from an error indicator (True = wrong) or a loss value."""
    return float(correct_or_loss)


class PairedTest:
    """Running sums of paired differences; a one-sided z-test that their mean is > 0."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.total_sq = 0.0

    def add(self, difference: float) -> None:
        self.n += 1
        self.total += difference
        self.total_sq += difference * difference

    def z(self) -> tuple[float, float, float]:
        """(mean, z, one-sided p-value)."""
        if self.n < 2:
            return 0.0, 0.0, 1.0
        mean = self.total / self.n
        var = max(self.total_sq / self.n - mean * mean, 0.0) * self.n / (self.n - 1)
        if var == 0.0:
            z = math.inf if mean > 0 else (-math.inf if mean < 0 else 0.0)
        else:
            z = mean / math.sqrt(var / self.n)
        return mean, z, 0.5 * math.erfc(z / math.sqrt(2)) if math.isfinite(z) else (
            0.0 if z > 0 else 1.0)


class Policy:
    """Challenger, promotion and rollback decisions for one model (line ids are opaque)."""

    def __init__(self, alpha: float = 0.01, min_labels: int = 500, max_looks: int = 8) -> None:
        self.alpha = alpha
        self.min_labels = min_labels
        self.max_looks = max_looks
        self.state: State = "steady"
        self.incumbent: int | None = None  # the line that must be beaten / must not be worse
        self.candidate: int | None = None
        self._test = PairedTest()
        self._look = 0

    def reset(self) -> None:
        """Back to steady (a person deployed something: the policy steps aside)."""
        self.state, self.incumbent, self.candidate = "steady", None, None
        self._test, self._look = PairedTest(), 0

    def on_champion_drift(self, offset: int
                          ) -> Literal["start_challenger", "restart_challenger"]:
        """Concept drift on the champion: start a challenger — or, while one is judged, start
        again: during a challenge the champion drifted anew, so a challenger trained from the
        earlier change point learned a mix of concepts; on probation the promoted version
        itself degrades, so its predecessor (an older concept still) is no reference. The
        learner drops the shadow being judged (``candidate``), calls ``reset`` and starts a
        challenger from the new change point."""
        return "start_challenger" if self.state == "steady" else "restart_challenger"

    def challenger_started(self, champion: int, challenger: int) -> None:
        self.state, self.incumbent, self.candidate = "challenging", champion, challenger
        self._test, self._look = PairedTest(), 0

    def promoted(self) -> None:
        """The candidate is champion now; the incumbent stays as a shadow on probation."""
        self.state = "probation"
        self.incumbent, self.candidate = self.candidate, self.incumbent
        self._test, self._look = PairedTest(), 0

    def observe(self, losses: dict[int, float | bool],
                served_by: int | None = None) -> Decision | None:
        """One label's losses by line; a decision at the end of a look, if there is one.

        `served_by` is the line whose version served the event as champion: a look counts only
        events served by the incumbent, so that after a promotion the probation judges events
        served after it (a backlog of earlier events would judge the old arrangement again).
        """
        if self.state == "steady" or self.incumbent not in losses \
                or self.candidate not in losses:
            return None
        if served_by is not None and served_by != self.incumbent:
            return None
        self._test.add(loss(losses[self.incumbent]) - loss(losses[self.candidate]))
        if self._test.n % self.min_labels:
            return None
        self._look += 1
        level = self.alpha / 2 ** self._look
        mean, z, p = self._test.z()
        if p < level:
            action = "promote" if self.state == "challenging" else "rollback"
        elif self._look >= self.max_looks:
            action = "drop_challenger" if self.state == "challenging" else "retire_predecessor"
        else:
            return None
        decision = Decision(action, self.incumbent, self.candidate,  # type: ignore[arg-type]
                            self._look, self._test.n, mean, z, p, level)
        if action != "promote":
            self.reset()
        return decision
