"""The verdict (issue 22): a pure function of two arms, tested on synthetic arms.

Each synthetic arm has a grid of learning rates and per-seed epoch-by-epoch curves, built
from a few numbers, so each test states the effect it plants and the label it must read."""

import dataclasses

import numpy as np
import pytest
from _arms import EPOCHS, LR, SEEDS, UPE, arm, noisy, point

from jaxopt_lectures.lab import stats, verdict
from jaxopt_lectures.lab.claims.rows import REGISTRY


def test_time_to_target_counts_updates_and_never_averages_a_run_that_did_not_get_there():
    a = arm([point(0.1, [4, 4, None, 4, 5], noisy(0.01), noisy(0.5))])
    tt = verdict.time_to_target(a, ("train_acc", 0.99))
    assert tt["updates"] == [160, 160, None, 160, 200]
    assert tt["reached"] == 4 and tt["cap"] == (EPOCHS + 1) * UPE


def test_the_stall_check_counts_the_baseline_seeds_that_never_reach_99_percent_at_its_fastest_point():
    """A baseline whose best η leaves 2 of 5 seeds short of the target stalls; one whose every
    seed gets there does not. The median is over the seeds that get there (never the cap)."""
    stuck = arm(
        [point(0.01, [None] * 5, noisy(0.5), noisy(0.5)), point(0.1, [6, None, 8, None, 7], noisy(0.3), noisy(0.5))]
    )
    fast = arm([point(0.01, [3, 3, 4, 3, 3], noisy(0.01), noisy(0.5))])
    out = verdict.stall_check(stuck, fast)
    assert out["stalls"] is True and out["never_reached"] == {"without": 2, "with": 0}
    assert out["median_updates"] == {"without": 7 * UPE, "with": 3 * UPE}
    assert out["budget"]["without"] == EPOCHS * UPE
    assert "without, 2 of 5 seeds never reach it" in out["detail"] and "with, 0 of 5" in out["detail"]
    never = verdict.stall_check(fast, arm([point(0.1, [None] * 5, noisy(0.5), noisy(0.5))]))
    assert never["stalls"] is False and never["never_reached"]["with"] == 5 and never["median_updates"]["with"] is None


def test_a_faster_optimizer_holds_and_the_point_picked_is_the_fastest():
    row = REGISTRY["adam"]  # better optimization, not for generalization
    base = arm([point(0.01, [8] * 5, noisy(0.02), noisy(0.5)), point(0.1, [6, 6, 7, 6, 6], noisy(0.01), noisy(0.5))])
    var = arm([point(0.01, [3, 3, 3, 3, 4], noisy(0.01), noisy(0.5)), point(0.1, [9] * 5, noisy(0.05), noisy(0.5))])
    out = verdict.judge(row, base, var, range(5))
    opt = out["halves"]["optimization"]
    assert opt["time_to_target"]["without"]["chosen"] == {LR: 0.1}
    assert opt["time_to_target"]["with"]["chosen"] == {LR: 0.01}
    # each time is the expected log of a crossing somewhere within its epoch (U(k-1, k]), not the epoch's end
    mean_log = {k: verdict._log_epoch_moments(k)[0] for k in (3, 4, 6, 7)}
    want = np.exp(np.mean([mean_log[v] - mean_log[b] for v, b in zip([3, 3, 3, 3, 4], [6, 6, 7, 6, 6])]))
    assert opt["estimate"] == pytest.approx(want)
    assert opt["result"] == "holds" and opt["metric"].startswith("updates to training accuracy")


def test_equal_speed_is_not_a_gain_and_a_variant_that_never_arrives_is_worse():
    row = REGISTRY["adam"]
    base = arm([point(0.1, [9] * 5, noisy(0.01), noisy(0.5))])
    same = arm([point(0.1, [9, 9, 10, 9, 9], noisy(0.01), noisy(0.5))])
    assert verdict.judge(row, base, same, range(5))["halves"]["optimization"]["result"] == "fails"
    never = arm([point(0.1, [None] * 5, noisy(0.3), noisy(0.5))])
    opt = verdict.judge(row, base, never, range(5))["halves"]["optimization"]
    assert opt["result"] == "fails" and opt["time_to_target"]["with"]["reached"] == 0 and opt["estimate"] > 1


def test_times_seen_at_epoch_ends_carry_their_rounding_in_the_interval():
    mean, var = verdict._log_epoch_moments(1)
    assert mean == pytest.approx(-1.0) and var == pytest.approx(1.0)  # log U(0, 1]
    mean, var = verdict._log_epoch_moments(10)
    assert mean == pytest.approx(np.log(9.5), abs=2e-3) and var == pytest.approx(1 / 12 / 9.5**2, rel=0.01)
    row = REGISTRY["adam"]
    base = arm([point(0.1, [2] * 5, noisy(0.01), noisy(0.5))])  # every seed at the same epoch: no spread
    opt = verdict.judge(row, base, base, range(5))["halves"]["optimization"]
    assert opt["estimate"] == pytest.approx(1.0) and opt["interval"][0] < 0.9 < 1.1 < opt["interval"][1]
    assert opt["result"] == "inconclusive"  # equal at a one-epoch resolution is no evidence of a 10% tie


def test_a_loss_target_when_the_baseline_never_reaches_99_percent():
    base = arm([point(0.1, [None] * 5, [0.2] * 5, noisy(0.5))])
    target = verdict.declare_target(base)
    assert target == ("train", pytest.approx(0.2))


def test_not_for_generalization_is_non_superiority_and_can_be_inconclusive():
    row = REGISTRY["adam"]
    base = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.5, 0.02))])
    tight = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.5, 0.02))])
    gen = verdict.judge(row, base, tight, range(5))["halves"]["generalization"]
    assert gen["kind"] == "non_superiority" and gen["result"] == "holds"
    wide = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.4, 0.6))])
    assert verdict.judge(row, base, wide, range(5))["halves"]["generalization"]["result"] in ("inconclusive", "fails")
    much_better = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.2, 0.02))])
    assert verdict.judge(row, base, much_better, range(5))["halves"]["generalization"]["result"] == "fails"


def test_a_tie_is_an_equivalence_test_on_both_halves():
    row = REGISTRY["momentum_variants"]
    assert row.design == "tie"
    base = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.5, 0.02))])
    slower = arm([point(0.1, [10] * 5, noisy(0.01), noisy(0.5, 0.02))])
    out = verdict.judge(row, base, slower, range(5))
    assert out["halves"]["optimization"]["kind"] == "equivalence"
    assert out["halves"]["optimization"]["result"] == "fails"  # twice as slow is no tie
    assert out["label"] in ("no", "partly")


def test_a_saturated_baseline_is_flagged():
    row = REGISTRY["adam"]
    acc = [[1.0] * EPOCHS for _ in range(SEEDS)]  # 100% from the first epoch
    base = arm([point(0.1, [1] * 5, noisy(0.001), noisy(0.5), acc_curves=acc)])
    out = verdict.judge(row, base, base, range(5))
    assert out["halves"]["optimization"]["saturated"] is True
    assert any("saturated" in f for f in out["flags"])


def test_overfitting_regime_needs_99_percent_training_accuracy_and_a_rising_validation_loss():
    row = REGISTRY["dropout"]
    assert row.regime == "overfits"
    rising = [list(np.r_[np.linspace(1.0, 0.5, 5), np.linspace(0.55, 0.9, 5)]) for _ in range(SEEDS)]
    fit = arm([point(1e-3, [4] * 5, noisy(0.01), noisy(0.9), val_curve=rising)])
    out = verdict.judge(row, fit, fit, range(5))
    assert out["regime"]["reached"] is True, out["regime"]
    underfit = arm([point(1e-3, [None] * 5, noisy(0.4), noisy(0.9), val_curve=rising)])
    out = verdict.judge(row, underfit, underfit, range(5))
    assert out["regime"]["reached"] is False and out["label"] == "regime not reached"
    assert "training accuracy" in out["regime"]["detail"]


def test_a_regularizer_is_compared_with_the_baseline_that_fits_not_the_one_validation_stopped_early():
    row = REGISTRY["dropout"]
    rising = [list(np.r_[np.linspace(1.0, 0.5, 5), np.linspace(0.55, 0.9, 5)]) for _ in range(SEEDS)]
    falling = [list(np.linspace(1.0, 0.7, 10)) for _ in range(SEEDS)]
    base = arm(
        [
            point(1e-3, [None] * 5, noisy(0.4), noisy(0.7), val=[0.7] * 5, val_curve=falling),  # val-best, underfits
            point(3e-3, [4] * 5, noisy(0.01), noisy(0.9), val=[0.9] * 5, val_curve=rising),  # fits, overfits
        ]
    )
    var = arm(
        [
            point(1e-3, [None] * 5, noisy(0.5), noisy(0.8), val=[0.8] * 5),
            point(3e-3, [6] * 5, noisy(0.05), noisy(0.6), val=[0.6] * 5),
        ]
    )
    out = verdict.judge(row, base, var, range(5))
    gen = out["halves"]["generalization"]
    assert gen["chosen"] == {"without": {LR: 3e-3}, "with": {LR: 3e-3}}
    assert out["regime"]["reached"] is True and gen["result"] == "holds" and "fits" in gen["tuned_on"]


def test_a_step_scale_claim_is_compared_at_equal_eta():
    row = REGISTRY["bias_correction"]
    assert row.design == "equal_eta"
    lrs = (0.01, 0.03, 0.3)
    base = arm([point(lr, [None] * 5, noisy(t), noisy(1.0)) for lr, t in zip(lrs, (0.42, 1.81, 15.1))])
    var = arm([point(lr, [None] * 5, noisy(t), noisy(1.0)) for lr, t in zip(lrs, (0.18, 0.22, 2.30))])
    opt = verdict.judge(row, base, var, range(5))["halves"]["optimization"]
    # a diverging loss counts as the chance loss ln 10: (0.18/0.42 * 0.22/1.81 * 2.30/2.30)^(1/3)
    assert opt["estimate"] == pytest.approx((0.18 / 0.42 * 0.22 / 1.81) ** (1 / 3), rel=0.1)
    assert opt["result"] == "holds" and "equal η" in opt["metric"]


def test_demonstrations_are_labelled_as_such():
    row = REGISTRY["accuracy_loss"]
    base = arm([point(0.1, [None] * 5, [2.3] * 5, noisy(2.3))])
    var = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.2))])
    assert verdict.judge(row, base, var, range(5))["label"] == "demonstration"


def test_a_baseline_that_diverges_everywhere_never_trains():
    row = REGISTRY["adam"]
    base = arm([point(0.1, [None] * 5, [np.nan] * 5, [np.nan] * 5, diverged=[0] * 5)])
    var = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.5))])
    assert verdict.judge(row, base, var, range(5))["label"] == "baseline never trains"


def test_the_table_is_decided_again_after_the_multiplicity_correction():
    row = REGISTRY["adam"]
    base = arm([point(0.1, [8] * 5, noisy(0.01), noisy(0.5, 0.02))])
    var = arm([point(0.1, [4] * 5, noisy(0.01), noisy(0.5, 0.02))])
    one = verdict.judge(row, base, var, range(5))
    rows = verdict.decide_table([one] * 40)
    assert all(r["label"] in verdict.LABELS for r in rows)
    assert all("result_unadjusted" in h for r in rows for h in r["halves"].values())
    assert one["halves"]["optimization"].get("result_unadjusted") is None  # the input is not changed


def test_judge_output_is_json_ready():
    import json

    row = REGISTRY["adam"]
    base = arm([point(0.1, [8] * 5, noisy(0.01), noisy(0.5))])
    json.dumps(verdict.judge(row, base, base, range(5)), allow_nan=False)


def test_eta_curve_lists_every_grid_point():
    a = arm([point(lr, [5] * 5, noisy(0.01), noisy(0.5)) for lr in (0.01, 0.1)])
    curve = verdict.eta_curve(a)
    assert [c["config"][LR] for c in curve] == [0.01, 0.1] and all(c["train"] > 0 for c in curve)


def test_stats_api_the_verdict_relies_on():
    for name in ("paired_ratio", "paired_points", "superiority", "non_superiority", "equivalence", "row_label"):
        assert callable(getattr(stats, name))


def _interaction(levels, **kw):
    from _arms import four_arms

    b1, v1, b2, v2 = four_arms(levels, **kw)
    # the half's logic on arms without training curves to check a regime on (that check has its own tests)
    row = dataclasses.replace(REGISTRY["dropout_relu_vs_sigmoid"], regime=None)
    return verdict.judge(row, b1, v1, range(5), level2=(b2, v2)), (b1, v1, b2, v2)


def test_an_interaction_holds_when_the_knob_helps_at_one_level_and_hurts_at_the_other():
    """Dropout x0.8 under ReLU and x1.05 under sigmoid: the ratio of ratios (~0.76) lies beyond
    1/1.1, each arm at its validation pick (η 0.01, never the worse 0.1); both simple effects and
    the interaction in test error points are reported."""
    out, (b1, v1, b2, v2) = _interaction((0.5, 0.4, 0.6, 0.63), acc=(0.80, 0.86, 0.78, 0.75))
    half = out["halves"]["generalization"]
    test = lambda a: np.array(a["points"][0]["test"])  # noqa: E731
    want = np.exp(np.mean(np.log(test(v1) / test(b1)) - np.log(test(v2) / test(b2))))
    assert half["estimate"] == pytest.approx(want) and half["result"] == "holds" and out["label"] == "yes"
    first, second = half["simple_effects"]
    assert first["level"] == "ReLU + He" and first["estimate"] == pytest.approx(
        np.exp(np.mean(np.log(test(v1) / test(b1))))
    )
    assert second["level"] == "sigmoid + Glorot" and second["estimate"] > 1 > first["estimate"]
    assert first["interval"][0] < first["estimate"] < first["interval"][1]
    assert half["chosen"] == {k: {LR: 0.01} for k in verdict.INTERACTION_ARMS}
    assert half["test_error"]["estimate_points"] == pytest.approx(100 * ((0.86 - 0.80) - (0.75 - 0.78)))
    assert first["test_error"]["estimate_points"] == pytest.approx(6.0)
    assert not half["calibration_only"] and not any("calibration" in f for f in out["flags"])  # the error agrees
    assert set(out["arms"]) == set(verdict.INTERACTION_ARMS) and out["levels"] == ["ReLU + He", "sigmoid + Glorot"]


def test_parallel_effects_are_no_interaction_and_a_small_study_is_inconclusive():
    """Dropout x0.8 at both levels: the ratio of ratios is ~1, so the claim fails (the whole
    interval above 1/1.1); with noisy seeds the same means are inconclusive, not a pass."""
    out, _ = _interaction((0.5, 0.4, 0.6, 0.48))
    half = out["halves"]["generalization"]
    assert half["estimate"] == pytest.approx(1.0, abs=0.05) and half["result"] == "fails" and out["label"] == "no"
    noisy_out, _ = _interaction((0.5, 0.45, 0.6, 0.6), spread=0.3)
    assert noisy_out["halves"]["generalization"]["result"] != "holds"


def test_an_interaction_row_needs_its_four_arms_and_only_it_takes_them():
    b1, v1, b2, v2 = _interaction((0.5, 0.4, 0.6, 0.63))[1]
    with pytest.raises(ValueError, match="level2"):
        verdict.judge(REGISTRY["dropout_relu_vs_sigmoid"], b1, v1, range(5))
    with pytest.raises(ValueError, match="level2"):
        verdict.judge(REGISTRY["dropout"], b1, v1, range(5), level2=(b2, v2))


# "Not for generalization" at matched training loss (teaching-truth v3 D3): a faster optimizer
# ends lower on test loss because it is further along; the claim is about test loss at the same
# training loss. Training curves step down by halves; test loss is a function of training loss.
HALVES = 0.5 ** np.arange(EPOCHS)  # epoch e: 2^-e
SLOW = np.repeat(HALVES[:5], 2)  # the baseline: one halving every two epochs, lowest 2^-4 at epoch 8
RNG_TEST = np.random.default_rng(22)


def _test_of(train, factor=1.0, spread=0.02):
    """Test cross-entropy as a function of training loss (lower training loss, lower test loss),
    times ``factor``, with independent per-epoch noise."""
    return list(factor * (0.2 + 2.0 * np.asarray(train)) * np.exp(RNG_TEST.normal(0, spread, len(train))))


def _curve_point(train_curve, factor=1.0):
    tests = [_test_of(train_curve, factor) for _ in range(SEEDS)]
    trains = [list(train_curve) for _ in range(SEEDS)]
    return point(
        0.1,
        [5] * SEEDS,
        [t[-1] for t in trains],
        [t[-1] for t in tests],
        val=[0.5] * SEEDS,
        curves={"train": trains, "test": tests},
    )


def test_a_faster_optimizer_that_generalizes_alike_at_matched_training_loss_holds_where_the_literal_reading_fails():
    row = REGISTRY["adam"]  # better optimization (not for generalization)
    base, fast = arm([_curve_point(SLOW)]), arm([_curve_point(HALVES)])
    gen = verdict.judge(row, base, fast, range(SEEDS))["halves"]["generalization"]
    assert gen["metric"] == verdict.MATCHED_METRIC and gen["matched"]["used"] is True
    assert gen["kind"] == "non_superiority" and gen["result"] == "holds", gen
    assert 1 / stats.RATIO_MARGIN < gen["interval"][0] and gen["estimate"] == pytest.approx(1.0, abs=0.05)
    # literally, the faster arm's final test loss is (0.2 + 2/512) / (0.2 + 2/16) = 0.63 of the baseline's
    assert gen["literal"]["result"] == "fails" and gen["literal"]["estimate"] == pytest.approx(0.63, abs=0.03)
    assert all(s["epoch"] == {"without": 8, "with": 4} for s in gen["matched"]["per_seed"])


def test_a_variant_with_lower_test_loss_at_the_same_training_loss_fails():
    row = REGISTRY["adam"]
    base, better = arm([_curve_point(SLOW)]), arm([_curve_point(HALVES, factor=0.7)])
    gen = verdict.judge(row, base, better, range(SEEDS))["halves"]["generalization"]
    assert gen["metric"] == verdict.MATCHED_METRIC and gen["result"] == "fails"
    assert gen["estimate"] == pytest.approx(0.7, abs=0.05)


def test_the_matched_level_is_per_seed_the_larger_lowest_training_loss_and_each_run_its_first_epoch_there():
    nan = np.nan
    pb = {
        "curves": {
            # seed 0: the baseline's lowest (0.2) is below the variant's (0.28): L* = 0.28;
            # seed 1: the variant's lowest is lower, the baseline diverged after epoch 2: L* = 0.4
            "train": [[1.0, 0.4, 0.2, 0.3, 0.25], [1.0, 0.6, 0.4, nan, nan]],
            "test": [[1.0, 0.9, 0.8, 0.7, 0.6], [2.0, 1.9, 1.8, nan, nan]],
        }
    }
    pv = {
        "curves": {
            "train": [[1.0, 0.5, 0.35, 0.3, 0.28], [0.9, 0.4, 0.1, 0.05, 0.01]],
            "test": [[1.5, 1.4, 1.3, 1.2, 1.1], [2.5, 2.4, 2.3, 2.2, 2.1]],
        }
    }
    seeds = verdict.matched_training_loss(pb, pv)
    assert [s["level"] for s in seeds] == [pytest.approx(0.28), pytest.approx(0.4)]
    assert seeds[0]["epoch"] == {"without": 2, "with": 4} and seeds[0]["test"] == {"without": 0.8, "with": 1.1}
    assert seeds[1]["epoch"] == {"without": 2, "with": 1} and seeds[1]["test"] == {"without": 1.8, "with": 2.4}
    never = {"curves": {"train": [[nan] * 5, [nan] * 5], "test": [[nan] * 5, [nan] * 5]}}
    assert verdict.matched_training_loss(never, pv)[0]["level"] is None


def test_arms_without_test_curves_fall_back_to_the_literal_reading_and_say_so():
    row = REGISTRY["adam"]
    base = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.5, 0.02))])
    var = arm([point(0.1, [5] * 5, noisy(0.01), noisy(0.5, 0.02))])
    gen = verdict.judge(row, base, var, range(SEEDS))["halves"]["generalization"]
    assert gen["matched"]["used"] is False and "literal" in gen["matched"]["note"]
    assert gen["metric"] == "test cross-entropy" and gen["result"] == gen["literal"]["result"]
    assert gen["estimate"] == gen["literal"]["estimate"]
    # a claim that is not "not better" (a tie: equivalence) keeps the plain reading
    tie = verdict.judge(REGISTRY["momentum_variants"], base, var, range(SEEDS))["halves"]["generalization"]
    assert tie["kind"] == "equivalence" and "matched" not in tie


def test_the_interaction_row_is_judged_in_the_dropout_row_s_regime():
    """Dropout is for a net that overfits: the 2 x 2 carries the dropout row's regime check, on
    its compared baseline (ReLU without dropout at its training-best η)."""
    row = REGISTRY["dropout_relu_vs_sigmoid"]
    assert row.regime == REGISTRY["dropout"].regime == "overfits"
    b1, v1, b2, v2 = _interaction((0.5, 0.4, 0.6, 0.63))[1]
    out = verdict.judge(row, b1, v1, range(5), level2=(b2, v2))
    assert out["regime"]["check"] == "overfits" and out["label"] in ("regime not reached", "yes")
    assert (out["label"] == "yes") == bool(out["regime"]["reached"])


def test_time_to_target_keeps_the_fastest_point_s_mean_training_curve():
    """The report draws each arm at the point its optimization half compares (issue 24 item 3):
    time_to_target keeps that point's training loss per epoch, averaged over the seeds."""
    fast = point(0.1, [3] * SEEDS, noisy(0.01), noisy(0.4))
    slow = point(0.01, [8] * SEEDS, noisy(0.02), noisy(0.3))
    a = arm([slow, fast])
    out = verdict.time_to_target(a, ("train_acc", verdict.TARGET_ACC))
    assert out["chosen_index"] == 1
    want = np.mean(np.array(fast["curves"]["train"], float), axis=0)
    assert out["train_curve"] == pytest.approx(list(want))


def test_the_2x2_compares_each_level_where_its_baseline_fits_as_the_dropout_row_does():
    """In the overfitting regime each level's baseline is read at its training-best η (0.1
    here, where validation would pick 0.01) and the variant at that η, its strength picked on
    validation: the pair the dropout row compares, so the 2 x 2 is judged in that row's regime."""
    arms, rng = [], np.random.default_rng(22)  # its own generator: the same arms in any worker
    for with_knob, level_test in ((False, 0.7), (True, 0.56), (False, 0.8), (True, 0.84)):
        fits = point(0.1, [6] * SEEDS, noisy(0.05 if with_knob else 0.01, rng=rng), noisy(level_test, 0.01, rng=rng))
        underfits = point(0.01, [None] * SEEDS, noisy(0.3, rng=rng), noisy(0.5, rng=rng))
        arms.append(arm([underfits, fits]))
    out = verdict.judge(REGISTRY["dropout_relu_vs_sigmoid"], arms[0], arms[1], range(SEEDS), level2=tuple(arms[2:]))
    half = out["halves"]["generalization"]
    assert half["chosen"] == {k: {LR: 0.1} for k in verdict.INTERACTION_ARMS}
    assert half["tuned_on"].startswith("each level's baseline at its training-best")
    assert half["estimate"] == pytest.approx((0.56 / 0.7) / (0.84 / 0.8), rel=0.1) and half["result"] == "holds"
    # the regime is checked on that compared baseline (its training-best point), not the validation pick
    assert "baseline training accuracy" in out["regime"]["detail"]
    plain = dataclasses.replace(REGISTRY["dropout_relu_vs_sigmoid"], regime=None)
    unfitted = verdict.judge(plain, arms[0], arms[1], range(SEEDS), level2=tuple(arms[2:]))
    assert unfitted["halves"]["generalization"]["chosen"]["without"] == {LR: 0.01}
