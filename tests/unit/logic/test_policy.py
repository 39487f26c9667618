"""The adaptation policy: its paired test, promotion, rollback and giving up after max_looks."""

from __future__ import annotations

import random
import statistics

import pytest
from scipy.stats import norm

from driftway.logic.policy import Decision, PairedTest, Policy

OLD, NEW = 1, 2


def errors(rng: random.Random, old_rate: float, new_rate: float) -> dict[int, bool]:
    """One label's 0/1 losses (True: wrong) of the two lines."""
    return {OLD: rng.random() < old_rate, NEW: rng.random() < new_rate}


def decide(policy: Policy, rng: random.Random, old_rate: float, new_rate: float,
           n: int) -> Decision | None:
    """The first decision within n labels, if any."""
    for _ in range(n):
        if decision := policy.observe(errors(rng, old_rate, new_rate)):
            return decision
    return None


def challenging(**kwargs: float) -> Policy:
    policy = Policy(**kwargs)  # type: ignore[arg-type]
    assert policy.on_champion_drift(offset=0) == "start_challenger"
    policy.challenger_started(champion=OLD, challenger=NEW)
    return policy


def test_paired_test_is_a_one_sided_z_test_on_the_mean_difference() -> None:
    differences = [1.0, 0.0, 1.0, 1.0, -1.0, 0.5, 1.0, 0.0]
    test = PairedTest()
    for d in differences:
        test.add(d)
    mean, z, p = test.z()
    expected_z = statistics.fmean(differences) / (
        statistics.stdev(differences) / len(differences) ** 0.5)
    assert mean == pytest.approx(statistics.fmean(differences))
    assert z == pytest.approx(expected_z)
    assert p == pytest.approx(norm.sf(expected_z))


def test_paired_test_edge_cases() -> None:
    assert PairedTest().z() == (0.0, 0.0, 1.0)  # fewer than two pairs: no evidence
    better, worse = PairedTest(), PairedTest()
    for _ in range(3):
        better.add(0.5)
        worse.add(-0.5)
    assert better.z()[2] == 0.0 and worse.z()[2] == 1.0  # no variance: certain either way


def test_a_better_challenger_is_promoted_at_a_look_then_judged_on_probation() -> None:
    policy = challenging(alpha=0.01, min_labels=200, max_looks=5)
    promote = decide(policy, random.Random(0), old_rate=0.4, new_rate=0.1, n=1000)
    assert promote is not None
    assert (promote.action, promote.incumbent, promote.candidate) == ("promote", OLD, NEW)
    assert promote.pairs % 200 == 0 and promote.alpha == 0.01 / 2 ** promote.look
    assert promote.p_value < promote.alpha and promote.mean_difference > 0
    assert promote.reason.startswith("challenger better")
    assert policy.state == "challenging"  # until the learner has deployed it
    policy.promoted()
    assert (policy.state, policy.incumbent, policy.candidate) == ("probation", NEW, OLD)


def test_a_promotion_that_degrades_is_rolled_back() -> None:
    policy = challenging(alpha=0.01, min_labels=200, max_looks=5)
    policy.promoted()
    # The promoted line (NEW) now errs more often than its predecessor.
    rollback = decide(policy, random.Random(1), old_rate=0.1, new_rate=0.4, n=1000)
    assert rollback is not None
    assert (rollback.action, rollback.incumbent, rollback.candidate) == ("rollback", NEW, OLD)
    assert policy.state == "steady" and policy.incumbent is None
    assert policy.on_champion_drift(offset=9) == "start_challenger"


def test_an_equal_challenger_is_dropped_after_max_looks() -> None:
    policy = challenging(alpha=0.01, min_labels=100, max_looks=3)
    drop = decide(policy, random.Random(2), old_rate=0.2, new_rate=0.2, n=300)
    assert drop is not None and (drop.action, drop.look, drop.pairs) == ("drop_challenger", 3, 300)
    assert policy.state == "steady" and policy.candidate is None


def test_probation_without_degradation_retires_the_predecessor() -> None:
    policy = challenging(alpha=0.01, min_labels=100, max_looks=2)
    policy.promoted()
    retire = decide(policy, random.Random(3), old_rate=0.3, new_rate=0.1, n=200)
    assert retire is not None and (retire.action, retire.look) == ("retire_predecessor", 2)
    assert policy.state == "steady"


def test_only_events_served_by_the_incumbent_and_answered_by_both_count() -> None:
    policy = challenging(alpha=0.01, min_labels=10, max_looks=1)
    for _ in range(50):
        assert policy.observe({OLD: True, NEW: False}, served_by=NEW) is None
        assert policy.observe({OLD: True}) is None  # the challenger did not answer
    assert policy.observe({OLD: 1.0, NEW: 0.0}, served_by=OLD) is None  # 1 pair of 10
    assert policy.state == "challenging"


def test_false_promotions_stay_below_alpha_over_all_looks() -> None:
    # Equal lines: any promotion is false. Over seeds the rate is about 0.04 (± 0.006 at 1,000
    # runs) against the bound sum(alpha / 2**k) < alpha; a level of alpha at every look gives 0.12.
    rng = random.Random(4)
    runs, alpha = 1000, 0.05
    promoted = 0
    for _ in range(runs):
        policy = challenging(alpha=alpha, min_labels=50, max_looks=6)
        decision = decide(policy, rng, old_rate=0.3, new_rate=0.3, n=300)
        assert decision is not None  # promoted, or dropped at the last look
        promoted += decision.action == "promote"
    assert promoted / runs < alpha


def test_drift_on_the_champion_while_a_shadow_is_judged_starts_again() -> None:
    policy = challenging(alpha=0.01, min_labels=200, max_looks=5)
    assert policy.on_champion_drift(offset=5) == "restart_challenger"
    policy.promoted()
    assert policy.on_champion_drift(offset=9) == "restart_challenger"
    policy.reset()
    assert policy.on_champion_drift(offset=12) == "start_challenger"
