"""The adaptation policy: its sequential test, promotion, rollback, giving up after max_labels."""

from __future__ import annotations

import math
import random
import statistics

from scipy.stats import norm

from driftway.logic.policy import MAX_BET, BettingTest, Decision, Policy

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


def test_the_betting_test_multiplies_its_wealth_by_one_plus_bet_times_difference() -> None:
    test, wealth = BettingTest(), 1.0
    for d in [1.0, -0.5, 0.25, 1.0, 1.0, -1.0, 0.0, 0.75] * 5:
        bet = test.bet()
        assert 0.0 <= bet <= MAX_BET
        wealth *= 1.0 + bet * d
        test.add(d)
    assert math.isclose(test.e_value, wealth, rel_tol=1e-9)
    assert math.isclose(test.mean, statistics.fmean([1.0, -0.5, 0.25, 1.0, 1.0, -1.0, 0.0, 0.75]))
    assert test.p_value <= 1.0 / test.e_value


def test_the_betting_test_stakes_nothing_while_the_candidate_is_worse() -> None:
    test = BettingTest()
    for _ in range(50):
        test.add(-1.0)
    assert test.bet() == 0.0 and test.e_value > 0.5  # a bad start costs almost nothing
    for _ in range(3):
        test.add(5.0)  # beyond the bound: counts as 1
    assert test.total == -50.0 + 3.0


def test_false_promotions_stay_below_alpha_reading_the_test_after_every_label() -> None:
    # Equal lines: any promotion is false. The test is read at every label from the 10th on
    # (the shortest min_labels the settings allow), 3,000 labels a run: a fixed-level z test
    # read this often would be wrong far more often than alpha. Ville's inequality bounds the
    # rate by alpha, and the bound is nearly reached: here 47 of 1,000 runs (± 7); over 20,000
    # runs of the same process 0.043 at alpha = 0.05, 0.0087 at alpha = 0.01.
    rng = random.Random(4)
    runs, alpha = 1000, 0.05
    promoted = 0
    for _ in range(runs):
        policy = challenging(alpha=alpha, min_labels=10, max_labels=3000)
        decision = decide(policy, rng, old_rate=0.3, new_rate=0.3, n=3000)
        assert decision is not None  # promoted, or dropped at max_labels
        promoted += decision.action == "promote"
    assert promoted / runs <= alpha
    assert promoted > 0  # the test is not trivially conservative


def test_false_rollbacks_stay_below_alpha_with_bounded_losses_of_any_size() -> None:
    # Brier-like losses in [0, 1], equal in distribution: rollbacks are false.
    rng = random.Random(5)
    runs, alpha, rolled_back = 400, 0.05, 0
    for _ in range(runs):
        policy = challenging(alpha=alpha, min_labels=10, max_labels=2000)
        policy.promoted()
        for _ in range(2000):
            losses = {OLD: rng.random() ** 3, NEW: rng.random() ** 3}
            if decision := policy.observe(losses):
                rolled_back += decision.action == "rollback"
                break
    assert rolled_back / runs <= alpha


def test_a_clearly_better_challenger_is_promoted_within_200_labels() -> None:
    # After an abrupt change the champion errs on 40 % of labels, the challenger on 10 %: the
    # former z test needed its first look (500 labels); this one decides at 100-200.
    rng = random.Random(0)
    pairs = []
    for _ in range(50):
        policy = challenging(alpha=0.01, min_labels=100, max_labels=4000)
        promote = decide(policy, rng, old_rate=0.4, new_rate=0.1, n=4000)
        assert promote is not None
        assert (promote.action, promote.incumbent, promote.candidate) == ("promote", OLD, NEW)
        assert promote.e_value >= 1 / 0.01 and promote.p_value <= 0.01
        assert promote.mean_difference > 0 and promote.reason.startswith("challenger better")
        pairs.append(promote.pairs)
    assert max(pairs) <= 200 and min(pairs) == 100  # not before min_labels
    assert policy.state == "challenging"  # until the learner has deployed it
    policy.promoted()
    assert (policy.state, policy.incumbent, policy.candidate) == ("probation", NEW, OLD)


def z_test_on_log_losses(differences: list[float]) -> float:
    """The former test's one-sided p-value: a paired z test on log-loss differences."""
    z = statistics.fmean(differences) / (statistics.stdev(differences) / len(differences) ** 0.5)
    return float(norm.sf(z))


def test_a_burst_of_confident_mistakes_does_not_decide() -> None:
    # The champion is better (10 % against 20 % errors) except for a burst of 12 labels it gets
    # confidently wrong (p = 1e-15 on the truth: log loss 34.5; bounded loss 1).
    burst_log_loss = -math.log(1e-15)
    for seed in range(20):
        rng = random.Random(seed)
        policy = challenging(alpha=0.01, min_labels=100, max_labels=3000)
        log_differences, decision = [], None
        for i in range(3000):
            if 20 <= i < 32:
                old, new, log_old, log_new = 1.0, 0.0, burst_log_loss, 0.05
            else:
                old, new = float(rng.random() < 0.1), float(rng.random() < 0.2)
                log_old, log_new = 0.1 + 0.9 * old, 0.1 + 0.9 * new
            if i < 500:
                log_differences.append(log_old - log_new)
            decision = decision or policy.observe({OLD: old, NEW: new})
        # The former test, on log losses over its first look of 500, promoted (level 0.005).
        assert z_test_on_log_losses(log_differences) < 0.005
        assert decision is not None and decision.action == "drop_challenger"


def test_a_promotion_that_degrades_is_rolled_back_despite_a_bad_start_of_the_predecessor(
        ) -> None:
    # Just after the promotion the predecessor is worse (still the old concept), then it has
    # re-learnt and is better: the early labels must not hold the rollback back for long.
    rng = random.Random(1)
    policy = challenging(alpha=0.01, min_labels=100, max_labels=4000)
    policy.promoted()
    assert decide(policy, rng, old_rate=0.5, new_rate=0.2, n=300) is None
    rollback = decide(policy, rng, old_rate=0.1, new_rate=0.3, n=1000)
    assert rollback is not None and rollback.pairs <= 300 + 250
    assert (rollback.action, rollback.incumbent, rollback.candidate) == ("rollback", NEW, OLD)
    assert policy.state == "steady" and policy.incumbent is None
    assert policy.on_champion_drift(offset=9) == "start_challenger"


def test_an_equal_challenger_is_dropped_after_max_labels() -> None:
    policy = challenging(alpha=0.01, min_labels=100, max_labels=300)
    drop = decide(policy, random.Random(2), old_rate=0.2, new_rate=0.2, n=300)
    assert drop is not None and (drop.action, drop.pairs) == ("drop_challenger", 300)
    assert policy.state == "steady" and policy.candidate is None


def test_probation_without_degradation_retires_the_predecessor() -> None:
    policy = challenging(alpha=0.01, min_labels=100, max_labels=200)
    policy.promoted()
    retire = decide(policy, random.Random(3), old_rate=0.3, new_rate=0.1, n=200)
    assert retire is not None and (retire.action, retire.pairs) == ("retire_predecessor", 200)
    assert policy.state == "steady"


def test_only_events_served_by_the_incumbent_and_answered_by_both_count() -> None:
    policy = challenging(alpha=0.01, min_labels=10, max_labels=10)
    for _ in range(50):
        assert policy.observe({OLD: True, NEW: False}, served_by=NEW) is None
        assert policy.observe({OLD: True}) is None  # the challenger did not answer
    assert policy.observe({OLD: 1.0, NEW: 0.0}, served_by=OLD) is None  # 1 pair of 10
    assert policy.state == "challenging"


def test_drift_on_the_champion_while_a_shadow_is_judged_starts_again() -> None:
    policy = challenging(alpha=0.01, min_labels=200, max_labels=1000)
    assert policy.on_champion_drift(offset=5) == "restart_challenger"
    policy.promoted()
    assert policy.on_champion_drift(offset=9) == "restart_challenger"
    policy.reset()
    assert policy.on_champion_drift(offset=12) == "start_challenger"
