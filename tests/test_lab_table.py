"""The fair lecture table (issue 10): registry, arms, budgets, selection, verdict, regime."""

import copy
import dataclasses

import numpy as np
import pytest
from test_lab_quotes import EXISTING, NEW  # the row names issue 10 lists, kept in one place

from jaxopt_lectures.lab import plan, run
from jaxopt_lectures.lab.claims import quotes
from jaxopt_lectures.lab.claims.rows import REGISTRY, differing_paths, flatten_setting


def test_registry_has_every_row_of_the_issue_and_each_has_a_quoted_claim():
    assert set(REGISTRY) == set(EXISTING) | set(NEW)
    assert set(REGISTRY) <= set(quotes.CLAIMS)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_arms_differ_in_exactly_the_named_knob_tuned_knobs_excepted(name):
    row = REGISTRY[name]
    gb, gv = row.grids(quick=False)
    tuned = set(gb) | set(gv)
    paths = differing_paths(row.baseline, row.variant) - tuned
    assert paths or tuned, f"{name}: baseline and variant are identical"
    outside = [p for p in paths if not (p == row.knob or p.startswith(row.knob + "."))]
    assert not outside, f"{name}: differs outside its knob {row.knob!r}: {outside}"
    flat_b, flat_v = flatten_setting(row.baseline), flatten_setting(row.variant)
    for path in gb:
        assert path in flat_b, f"{name}: tunes {path} which the baseline does not set"
    for path in gv:
        assert path in flat_v, f"{name}: tunes {path} which the variant does not set"
    for grid in (gb, gv):  # every tuned knob is a traced input (one program per arm)
        plan.trainer_configs(plan.grid_points(grid))
    qb, qv = row.grids(quick=True)
    assert set(qb) == set(gb) and set(qv) == set(gv)


def test_budgets_are_equal_in_updates_unless_the_row_says_epochs():
    assert run.arm_epochs(REGISTRY["more_data"], quick=False) == (60, 15)  # 9 vs 37 steps per epoch (batch 64)
    base, var = run.arm_epochs(REGISTRY["batch_size"], quick=False)
    assert base * 2 == pytest.approx(var * 78, rel=0.05)  # 1257 // 512 = 2 vs 1257 // 16 = 78 steps
    assert run.arm_epochs(REGISTRY["full_batch"], quick=False) == (20, 20)  # the claim is per epoch
    assert run.arm_epochs(REGISTRY["adam"], quick=True) == (6, 6)


def arm(train, test, val=None, test_acc=None, diverged=None, grid_failures=None, curve=None, grid_diverged=None):
    n = len(train)
    val = list(val if val is not None else test)
    return {
        "fingerprint": "x",
        "chosen": {"optimizer.learning_rate": 0.1},
        "grid": {"optimizer.learning_rate": [0.1]},
        "grid_val": [float(np.mean([v for v in val if v is not None] or [np.nan]))],
        "grid_failures": grid_failures or [0],
        "grid_diverged": grid_diverged or [0],
        "epochs": 4,
        "train": list(train),
        "val": val,
        "val_acc": [0.9] * n,
        "test": list(test),
        "test_acc": list(test_acc if test_acc is not None else [0.9] * n),
        "diverged": diverged or [False] * n,
        "curves": {
            "train": {"mean": curve or [1.0, 0.5, 0.4, 0.3], "std": [0.0] * 4},
            "val": {"mean": [1.0] * 4, "std": [0.0] * 4},
        },
    }


NOISE = np.array([0.01, -0.02, 0.015, -0.005, 0.0])


def test_a_clear_optimizer_gain_agrees_and_noise_does_not():
    row = REGISTRY["adam"]  # better optimization, not for generalization
    base = arm(1.0 + NOISE, 1.0 + NOISE)
    better = arm(0.5 + NOISE, 1.0 - NOISE)
    out = run.judge(row, base, better, range(5))
    assert out["comparisons"]["train"]["direction"] == 1
    assert out["halves"]["optimization"] is True
    assert out["agrees"] == "yes"
    same = run.judge(row, base, arm(1.0 - NOISE, 1.0 - NOISE), range(5))
    assert same["comparisons"]["train"]["direction"] == 0 and same["agrees"] in ("no", "partly")


def test_the_negative_half_of_a_claim_is_checked():
    claim = quotes.CLAIMS["more_data"]
    assert claim.train in ("not better", "worse")
    row = REGISTRY["more_data"]
    gap = arm(0.1 + NOISE / 10, 1.5 + NOISE)  # overfits: the regime holds
    both = run.judge(row, gap, arm(0.05 + NOISE / 10, 1.0 + NOISE), range(5))
    assert both["halves"] == {"optimization": False, "generalization": True}
    assert both["agrees"] == "partly"


def test_a_baseline_that_never_trains_is_not_an_agreement():
    row = REGISTRY["init"]
    n = 5
    base = arm([None] * n, [None] * n, diverged=[True] * n, grid_failures=[n], grid_diverged=[n])
    out = run.judge(row, base, arm(0.1 + NOISE / 10, 0.2 + NOISE / 10), range(n))
    assert out["agrees"] == "baseline never trains"
    assert out["diverged"]["without"] == "5/5"


def test_one_diverged_seed_does_not_decide_the_row():
    row = REGISTRY["adam"]
    div = [True, False, False, False, False]
    base = arm([None, *(1.0 + NOISE[1:])], [None, *(1.0 + NOISE[1:])], diverged=div)
    out = run.judge(row, base, arm(1.0 - NOISE, 1.0 - NOISE), range(5))
    assert out["comparisons"]["train"]["direction"] == 0 and out["comparisons"]["train"]["n"] == 4
    assert out["diverged"] == {"without": "1/5", "with": "0/5"}


def test_a_regularizer_whose_baseline_does_not_overfit_reports_the_regime():
    row = REGISTRY["dropout"]
    base = arm(0.50 + NOISE, 0.52 + NOISE)  # train ≈ validation: nothing to regularize
    out = run.judge(row, base, arm(0.6 + NOISE, 0.45 + NOISE), range(5))
    assert out["regime"]["reached"] is False and out["agrees"] == "regime not reached"


def test_decay_needs_a_plateau():
    row = REGISTRY["decay"]
    still_falling = arm(0.3 + NOISE, 0.3 + NOISE, curve=[1.0, 0.6, 0.4, 0.2])
    assert run.check_regime(row, still_falling, still_falling)["reached"] is False
    flat = arm(0.3 + NOISE, 0.3 + NOISE, curve=[1.0, 0.5, 0.31, 0.30])
    assert run.check_regime(row, flat, flat)["reached"] is True


def test_selection_reads_validation_only_so_the_test_split_stays_untouched(monkeypatch):
    setting = copy.deepcopy(REGISTRY["adam"].baseline)
    grid = {"optimizer.learning_rate": (0.01, 0.3)}
    clean = run.run_arm(setting, grid, 1, (0, 1))
    load = plan.load_data

    def scrambled(spec, seed):  # the same train/validation data, a test split with shuffled labels
        ds = load(spec, seed)
        return dataclasses.replace(ds, y_test=np.random.default_rng(seed).permutation(ds.y_test))

    monkeypatch.setattr(plan, "load_data", scrambled)
    other = run.run_arm(setting, grid, 1, (0, 1))
    assert other["chosen"] == clean["chosen"]
    np.testing.assert_allclose(other["val"], clean["val"])
    assert not np.allclose(other["test_acc"], clean["test_acc"])


def test_explain_prints_the_quote_design_grid_and_budget():
    text = run.explain(REGISTRY["warmup"], range(5), quick=False)
    q = quotes.CLAIMS["warmup"].quotes[0]
    for part in (q.seed, q.text.split("\n")[0][:10], "optimizer.learning_rate", "epochs", "instability"):
        assert part in text


def test_classic_dropout_with_a_traced_rate_is_refused_not_evaluated_wrongly():
    import functools

    import jaxopt_lectures as jol
    from jaxopt_lectures.lab import data, models, trainer

    ds = data.load_digits(train_size=64)
    mlp = functools.partial(models.MLP, (64, 16, 10), dropout_mode="classic")
    with pytest.raises(ValueError, match="dropout_mode='inverted'"):
        trainer.train(mlp, ds, jol.sgd(0.1), epochs=1, seeds=(0,), hparams={"dropout": 0.5}, progress=False)
