"""The verdict statistics: the paired test by hand, and the rule
itself by simulation (false-positive rate under no effect, power rising with seeds), divergence."""

import math

import numpy as np
import pytest

from jaxopt_lectures.lab import stats

REPS = 4000
SEEDS = (3, 5, 10)


def test_paired_test_on_a_hand_computed_example():
    # r = (-0.1, -0.2, -0.1): mean -2/15, s = 1/sqrt(300), se = 1/30, t = -4, df = 2,
    # p = 2 (1 - F(4; 2)) = 1 - 4/sqrt(18); interval -2/15 -/+ 4.302653/30.
    res = stats.paired_test([1.0, 2.0, 4.0], [0.9, 1.6, 3.6])
    assert res.n == 3
    assert res.mean_diff == pytest.approx(-0.3)
    assert res.rel_change == pytest.approx(-2.0 / 15.0)
    assert res.t == pytest.approx(-4.0)
    assert res.p_value == pytest.approx(1.0 - 4.0 / math.sqrt(18.0), rel=1e-9)
    assert res.interval[0] == pytest.approx(-2.0 / 15.0 - 4.302653 / 30.0, abs=1e-6)
    assert res.interval[1] == pytest.approx(-2.0 / 15.0 + 4.302653 / 30.0, abs=1e-6)
    # All three seeds lower, yet p = 0.057: three seeds are not enough for this spread.
    assert stats.direction([1.0, 2.0, 4.0], [0.9, 1.6, 3.6]) == 0


def test_paired_test_degenerate_cases():
    one = stats.paired_test([1.0], [0.5])
    assert one.n == 1 and one.rel_change == pytest.approx(-0.5)
    assert math.isnan(one.p_value) and math.isnan(one.t) and all(map(math.isnan, one.interval))
    assert stats.direction([1.0], [0.5]) == 0
    same = stats.paired_test([1.0, 2.0, 4.0], [0.5, 1.0, 2.0])  # every seed exactly -50 %
    assert same.p_value == 0.0 and same.t == -math.inf and same.interval == (-0.5, -0.5)
    assert stats.direction([1.0, 2.0, 4.0], [0.5, 1.0, 2.0]) == -1
    none = stats.paired_test([1.0, 2.0], [1.0, 2.0])
    assert none.p_value == 1.0 and none.t == 0.0 and none.interval == (0.0, 0.0)
    empty = stats.paired_test([math.inf], [1.0])
    assert empty.n == 0 and math.isnan(empty.rel_change)
    zero_base = stats.paired_test([0.0, 0.0, 0.0], [1e-13, 2e-13, 3e-13])  # TINY floor, no warning
    assert np.isfinite(zero_base.rel_change)


def test_margin_rejects_significant_but_trivial_changes():
    rng = np.random.default_rng(1)
    base = 1.0 + 0.1 * rng.standard_normal(10)
    var = base * (1.01 + 0.001 * rng.standard_normal(10))  # +1 %, very consistent
    assert stats.paired_test(base, var).p_value < 1e-6
    assert stats.direction(base, var) == 0
    assert stats.direction(base, var, margin=0.005) == 1


def test_batched_direction_matches_row_by_row():
    rng = np.random.default_rng(2)
    base = 1.0 + 0.1 * rng.standard_normal((50, 5))
    var = base * (0.95 + 0.05 * rng.standard_normal((50, 5)))
    batched = stats.direction(base, var)
    assert batched.shape == (50,)
    assert [stats.direction(b, v) for b, v in zip(base, var)] == batched.tolist()
    res = stats.paired_test(base, var)
    row = stats.paired_test(base[7], var[7])
    assert res.p_value[7] == pytest.approx(row.p_value) and res.interval[0][7] == pytest.approx(row.interval[0])


def _null_pairs(rng, n, noise):
    base = 1.0 + 0.1 * rng.standard_normal((REPS, n))
    z = rng.standard_normal((REPS, n))
    if noise == "multiplicative":
        return base, base * (1.0 + 0.05 * z)  # r exactly normal, mean 0
    return base, base + 0.05 * z  # r = 0.05 z / base: symmetric, not normal


@pytest.mark.parametrize("noise", ["multiplicative", "additive"])
@pytest.mark.parametrize("n", SEEDS)
def test_no_effect_shows_an_effect_at_most_alpha(n, noise):
    rng = np.random.default_rng(0)
    base, var = _null_pairs(rng, n, noise)
    d = stats.direction(base, var)
    slack = 3.0 * math.sqrt(0.05 * 0.95 / REPS)  # three Monte Carlo standard errors
    for side in (-1, 1):  # a given claimed direction: at most alpha / 2
        assert np.mean(d == side) <= 0.025 + slack
    assert np.mean(d != 0) <= 0.05 + slack


def _effect_pairs(rng, n, effect=-0.10, sd=0.05):
    base = 1.0 + 0.1 * rng.standard_normal((REPS, n))
    return base, base * (1.0 + effect + sd * rng.standard_normal((REPS, n)))


def test_power_rises_with_seeds():
    power = []
    for n in SEEDS:
        base, var = _effect_pairs(np.random.default_rng(0), n)
        power.append(float(np.mean(stats.direction(base, var) == -1)))
        comp = stats.compare(base[0], var[0])  # the same rule through compare: +1 = better
        assert comp.direction == -stats.direction(base[0], var[0])
    assert power[0] < power[1] < power[2]
    assert power[2] > 0.99


def _old_rule_yes(base, var):
    """recipe.py before issue 10: |mean d| > max(2 % |mean base|, 1e-3, std d) and every seed lower."""
    d = var - base
    tol = np.maximum(0.02 * np.abs(base.mean(-1)), 1e-3)
    shows = (d.mean(-1) < 0) & (np.abs(d.mean(-1)) > np.maximum(tol, d.std(-1)))
    return shows & (d < 0).all(-1)


def test_more_seeds_do_not_lose_power_as_under_the_old_unanimity_rule():
    # A true effect of one standard deviation (d_z = 1): the audit's example.
    rng = np.random.default_rng(0)
    base = 1.0 + 0.1 * rng.standard_normal((REPS, 10))
    var = base * (1.0 - 0.05 + 0.05 * rng.standard_normal((REPS, 10)))
    new, old = np.mean(stats.direction(base, var) == -1), np.mean(_old_rule_yes(base, var))
    assert new > 0.7 and old < 0.3


def test_an_outlier_seed_does_not_hide_a_consistent_large_effect():
    base = np.ones(10)
    var = np.array([0.6, 0.58, 0.62, 0.61, 0.59, 0.6, 0.57, 0.63, 0.6, 1.05])  # -40 % on 9 of 10 seeds
    assert not _old_rule_yes(base[None], var[None])[0]
    comp = stats.compare(base, var)
    assert comp.status == "ok" and comp.direction == 1
    assert comp.test.interval[1] < -0.2


def test_one_diverged_seed_does_not_decide_the_direction():
    rng = np.random.default_rng(3)
    base = 1.0 + 0.1 * rng.standard_normal(5)
    var = base * (1.0 + 0.01 * rng.standard_normal(5))  # no effect on the finite pairs
    base[2] = math.inf  # the old rule called this row "variant better"
    comp = stats.compare(base, var)
    assert comp.status == "ok" and comp.direction == 0 and comp.diverged == (1, 0, 5)
    assert comp.test.n == 4
    assert all(np.isfinite([comp.test.mean_diff, comp.test.rel_change, comp.test.t, *comp.test.interval]))
    flagged = stats.compare(np.where(np.isinf(base), 0.3, base), var, [False, False, True, False, False])
    assert flagged == comp  # a flagged seed is dropped even when its value looks finite (and good)


def test_an_arm_that_never_trains_gets_a_status_not_a_direction():
    var = np.array([0.5, 0.6, 0.55])
    comp = stats.compare([math.inf, math.nan, math.inf], var)
    assert comp.status == "baseline never trains" and comp.direction == 0 and comp.diverged == (3, 0, 3)
    assert comp.test.n == 0 and not np.isinf([comp.test.mean_diff, comp.test.rel_change]).any()
    comp = stats.compare(var, [math.inf] * 3)
    assert comp.status == "variant never trains" and comp.direction == 0
    comp = stats.compare([1.0, math.inf, 1.0, 1.0], [math.inf, 1.0, math.inf, 0.5])
    assert comp.status == "too few finite pairs" and comp.direction == 0 and comp.test.n == 1


def test_compare_higher_is_better_for_accuracy():
    base, var = np.array([0.80, 0.82, 0.79, 0.81, 0.80]), np.array([0.88, 0.89, 0.87, 0.90, 0.88])
    assert stats.compare(base, var, higher_is_better=True).direction == 1
    assert stats.compare(base, var).direction == -1  # as a loss, higher is worse


def test_split_diverged_counts_and_drops_pairs():
    sp = stats.split_diverged([1.0, 2.0, math.nan, 4.0], [1.0, math.inf, 3.0, 4.0], [True, False, False, False])
    assert sp.base.tolist() == [4.0] and sp.var.tolist() == [4.0]
    assert (sp.k_base, sp.k_var, sp.n) == (2, 1, 4)
    with pytest.raises(ValueError, match="base_diverged"):
        stats.split_diverged([1.0, 2.0], [1.0, 2.0], [True])


def test_claim_check():
    assert stats.claim_check("better", 1) is True and stats.claim_check("better", 0) is False
    assert stats.claim_check("not better", 0) is True and stats.claim_check("not better", -1) is True
    assert stats.claim_check("not better", 1) is False
    assert stats.claim_check("worse", -1) is True and stats.claim_check("worse", 0) is False
    assert stats.claim_check("not worse", 1) is True and stats.claim_check("not worse", -1) is False
    assert stats.claim_check("any", 1) is None and stats.claim_check(None, -1) is None
    with pytest.raises(ValueError, match="expected must be one of"):
        stats.claim_check("faster", 1)
    with pytest.raises(ValueError, match="observed_direction"):
        stats.claim_check("better", 2)


def test_chance_agreements_and_holm():
    assert stats.chance_agreements(27) == pytest.approx(0.675)
    assert stats.chance_agreements(10, alpha=0.1) == pytest.approx(0.5)
    # sorted 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop there.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    assert stats.holm([0.001, math.nan]) == [True, False]
    assert stats.holm([]) == []


def test_fmt_interval():
    assert stats.fmt_interval(-0.12, -0.03) == "[-12%, -3%]"
    assert stats.fmt_interval(-0.004, 0.021) == "[-0.4%, +2.1%]"
    assert stats.fmt_interval(0.0, 0.5) == "[0%, +50%]"
    assert stats.fmt_interval(math.nan, math.nan) == "[n/a]"


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="alpha"):
        stats.direction([1.0, 2.0], [1.0, 2.0], alpha=1.5)
    with pytest.raises(ValueError, match="margin"):
        stats.compare([1.0, 2.0], [1.0, 2.0], margin=-0.1)
    with pytest.raises(ValueError, match="same shape"):
        stats.paired_test([1.0, 2.0], [1.0])
