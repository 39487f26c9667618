"""The adaptation policy: drift starts a challenger, a test promotes it, degradation rolls back.

Pure state machine, driven by the learner in the training topic's order:

- **steady** — the champion serves. Concept drift on the champion starts a challenger (trained on
  the examples since the estimated change point), deployed as a shadow. Drift on the champion
  while a challenger or a predecessor is judged drops that shadow and starts a new challenger
  from the new change point.
- **challenging** — champion and challenger answer the same events; each label gives a paired loss
  difference d = loss(champion) − loss(challenger), bounded in [−1, 1]. A sequential test
  (:class:`BettingTest`) asks after every label whether the challenger is better; it may be read
  at every label without spending α, so the chance of ever promoting a challenger that is no
  better stays below α. From ``min_labels`` pairs on, significant → **promote**; after
  ``max_labels`` pairs without it the challenger is dropped.
- **probation** — the promoted version serves, its predecessor is kept as a shadow; the same test
  in the other direction (is the predecessor better?) → **rollback**. After ``max_labels`` pairs
  without it, the predecessor is retired and the policy is steady again.

Losses are bounded, so that no label counts for more than one: the learner sends a classifier's
0/1 error (a confident mistake costs 1; as a log loss it cost up to 34, and a few such labels
decided a look of the former z test) and a regressor's squared error, whose differences are
clipped to ±1.

>>> p = Policy(alpha=0.01, min_labels=50, max_labels=2_000)
>>> p.on_champion_drift(offset=10)
'start_challenger'
>>> p.challenger_started(champion=1, challenger=2)
>>> import random
>>> rng = random.Random(0)
>>> decision = None
>>> for _ in range(400):
...     decision = decision or p.observe({1: rng.random() < 0.4, 2: rng.random() < 0.1})
>>> decision.action, 50 <= decision.pairs < 150, decision.p_value <= 0.01
('promote', True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

State = Literal["steady", "challenging", "probation"]

MAX_BET = 0.5  # the largest fraction of its wealth the test stakes on one label
MEMORY = 100  # labels: the bet follows the differences of about this many recent labels
PRIOR_LABELS = 20  # the bet starts as if it had seen this many differences of mean 0, d² = 1


@dataclass(frozen=True)
class Decision:
    """What the policy decided, and the evidence."""

    action: Literal["promote", "rollback", "drop_challenger", "retire_predecessor"]
    incumbent: int
    candidate: int
    pairs: int
    mean_difference: float
    e_value: float
    p_value: float
    alpha: float

    @property
    def reason(self) -> str:
        better = {"promote": "challenger better", "rollback": "predecessor better",
                  "drop_challenger": "challenger not better",
                  "retire_predecessor": "no degradation"}[self.action]
        return (f"{better}: paired loss difference {self.mean_difference:+.4f} over "
                f"{self.pairs} labels, e={self.e_value:.3g}, p={self.p_value:.2g} "
                f"(anytime-valid, level {self.alpha:.2g})")


def loss(correct_or_loss: bool | float) -> float:
    """A loss from an error indicator (True = wrong) or a loss value."""
    return float(correct_or_loss)


class BettingTest:
    """An anytime-valid one-sided test that paired differences in [−1, 1] have a mean above 0.

    A bettor starts with wealth 1 and stakes a fraction λ of it on each difference d, chosen
    before d is seen: wealth ← wealth · (1 + λ·d), λ in [0, ``MAX_BET``]. While every difference
    has a mean ≤ 0 given the past (the null: the candidate is no better), the wealth is a
    nonnegative supermartingale, so by Ville's inequality it ever reaches 1/α with probability at
    most α — however often it is read (Waudby-Smith & Ramdas, "Estimating means of bounded random
    variables by betting", 2023). λ is the Kelly bet m/s from a recency-weighted mean m and
    second moment s of the past differences (their aGRAPA, with a memory of ``MEMORY`` labels, a
    prior of mean 0 and the mean floored at 0): while the candidate is worse the test bets next
    to nothing and loses next to nothing, and a bad start does not hold back later evidence. A
    difference beyond ±1 counts as ±1; every bet is at most ``MAX_BET``, so a burst of
    confident mistakes (at most 1 each) needs about 19 labels in a row to decide alone.

    >>> t = BettingTest()
    >>> for d in [1.0, 0.0, 1.0, 1.0] * 10:
    ...     t.add(d)
    >>> t.n, round(t.mean, 2), t.e_value > 100, t.p_value < 0.01
    (40, 0.75, True, True)
    """

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.log_wealth = 0.0
        self._best_log_wealth = 0.0
        self._mean = 0.0
        self._square = 1.0

    def bet(self) -> float:
        """The fraction of the wealth staked on the next difference."""
        return min(max(self._mean / self._square, 0.0), MAX_BET)

    def add(self, difference: float) -> None:
        d = min(max(difference, -1.0), 1.0)
        self.log_wealth += math.log1p(self.bet() * d)
        self._best_log_wealth = max(self._best_log_wealth, self.log_wealth)
        self.n += 1
        self.total += d
        rate = 1.0 / min(self.n + PRIOR_LABELS, MEMORY)
        # Floored at 0: a mean below it only says "bet nothing", so a bad start (the candidate
        # worse at first) is forgotten as soon as the candidate is better.
        self._mean = max(0.0, self._mean + rate * (d - self._mean))
        self._square += rate * (d * d - self._square)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def e_value(self) -> float:
        """The wealth now: evidence against the null, rejected at 1/α."""
        return math.exp(self.log_wealth)

    @property
    def p_value(self) -> float:
        """The anytime-valid p-value, 1 / the highest wealth so far."""
        return math.exp(-self._best_log_wealth)

    def rejects(self, alpha: float) -> bool:
        return self.log_wealth >= math.log(1.0 / alpha)


class Policy:
    """Challenger, promotion and rollback decisions for one model (line ids are opaque)."""

    def __init__(self, alpha: float = 0.01, min_labels: int = 100,
                 max_labels: int = 4_000) -> None:
        self.alpha = alpha
        self.min_labels = min_labels
        self.max_labels = max_labels
        self.state: State = "steady"
        self.incumbent: int | None = None  # the line that must be beaten / must not be worse
        self.candidate: int | None = None
        self._test = BettingTest()

    def reset(self) -> None:
        """Back to steady (a person deployed something: the policy steps aside)."""
        self.state, self.incumbent, self.candidate = "steady", None, None
        self._test = BettingTest()

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
        self._test = BettingTest()

    def promoted(self) -> None:
        """The candidate is champion now; the incumbent stays as a shadow on probation."""
        self.state = "probation"
        self.incumbent, self.candidate = self.candidate, self.incumbent
        self._test = BettingTest()

    def observe(self, losses: dict[int, float | bool],
                served_by: int | None = None) -> Decision | None:
        """One label's losses by line; a decision, if this label brings one.

        `served_by` is the line whose version served the event as champion: only events served
        by the incumbent count, so that after a promotion the probation judges events served
        after it (a backlog of earlier events would judge the old arrangement again).
        """
        if self.state == "steady" or self.incumbent not in losses \
                or self.candidate not in losses:
            return None
        if served_by is not None and served_by != self.incumbent:
            return None
        test = self._test
        test.add(loss(losses[self.incumbent]) - loss(losses[self.candidate]))
        if test.n >= self.min_labels and test.rejects(self.alpha):
            action = "promote" if self.state == "challenging" else "rollback"
        elif test.n >= max(self.max_labels, self.min_labels):
            action = "drop_challenger" if self.state == "challenging" else "retire_predecessor"
        else:
            return None
        decision = Decision(action, self.incumbent, self.candidate,  # type: ignore[arg-type]
                            test.n, test.mean, test.e_value, test.p_value, self.alpha)
        if action != "promote":
            self.reset()
        return decision
