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


@pytest.mark.parametrize("name", ["init", "batchnorm", "layernorm"])
def test_the_deep_network_rows_report_the_deep_narrow_net_and_only_the_hidden_sizes_change(name):
    """Issue 24: the init and normalization claims are about training a deep network, so they are
    also reported where plain SGD stalls (12 x 16); the judged 8 x 64 setting stays as it was and
    each arm keeps its own init and normalization."""
    row = REGISTRY[name]
    assert list(row.settings) == ["deep narrow net"] and row.baseline["model"]["hidden"] == [64] * 8
    narrow = row.in_setting("deep narrow net")
    assert narrow.setting_name == "deep narrow net" and not narrow.settings
    for before, after in ((row.baseline, narrow.baseline), (row.variant, narrow.variant)):
        assert differing_paths(before, after) == {"model.hidden"}
        assert after["model"]["hidden"] == [16] * 12
    assert differing_paths(narrow.baseline, narrow.variant) == differing_paths(row.baseline, row.variant)
    # the same network as the optimizer rows' deep narrow net (whose init is LeCun's)
    assert REGISTRY["adam"].in_setting("deep narrow net").baseline["model"]["hidden"] == [16] * 12


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


def test_the_dropout_activation_row_is_a_2x2_design_of_four_arms():
    """Issue 22 item 3: dropout's effect under ReLU against its effect under sigmoid. Within a
    level the arms differ only in dropout (its rate tuned); across levels only in the activation
    and its initialization; the ReLU pair is the dropout row's own arms (trained once)."""
    row = REGISTRY["dropout_relu_vs_sigmoid"]
    assert row.design == "interaction" and quotes.CLAIMS[row.name].train is None
    other = row.at_second_level()
    for base, var in ((row.baseline, row.variant), (other.baseline, other.variant)):
        assert differing_paths(base, var) == {"hparams.dropout"}
    for one, two in ((row.baseline, other.baseline), (row.variant, other.variant)):
        assert differing_paths(one, two) == {"model.activation", "model.init"}
        assert (one["model"]["activation"], two["model"]["activation"], two["model"]["init"]) == (
            "relu",
            "sigmoid",
            "glorot",
        )
    b1, v1, b2, v2 = run.judged_arms(row, (0, 1), quick=True)
    for base, var in ((b1, v1), (b2, v2)):  # the arm without dropout has no dropout term at all
        assert "dropout" not in base.setting["hparams"] and var.grid["hparams.dropout"] == (0.1, 0.3, 0.5)
        assert base.grid == {"optimizer.learning_rate": row.tune["optimizer.learning_rate"]}
        assert set(var.grid) == {"optimizer.learning_rate", "hparams.dropout"}
    dropout = run.row_arms(REGISTRY["dropout"], (0, 1), quick=True)
    assert (b1.fingerprint, v1.fingerprint) == (dropout[0].fingerprint, dropout[1].fingerprint)
    assert {s.fingerprint for s in (b2, v2)} <= {s.fingerprint for s in run.table_arms((0, 1), True)}
    assert len(run.judged_arms(REGISTRY["dropout"], (0, 1), True)) == 2
    with pytest.raises(ValueError, match="factor"):
        dataclasses.replace(row, factor={})


def test_an_inconclusive_interaction_extends_all_four_arms_with_the_same_seeds(monkeypatch):
    """run_row trains the 2 x 2's four arms together, and an undecided interaction adds the next
    block of seeds to every one of them (the per-seed pairing spans all four)."""
    from _arms import four_arms

    calls = []

    def fake_run_arms(specs, seeds, peers=(), progress=False, desc=""):
        calls.append((len(specs), tuple(seeds)))
        return four_arms((0.5, 0.45, 0.6, 0.6), spread=0.3)  # far too noisy to decide on 5 seeds

    monkeypatch.setattr(run, "run_arms", fake_run_arms)
    out = run.run_row(REGISTRY["dropout_relu_vs_sigmoid"], (0, 1, 2, 3, 4), quick=False)
    seeds = (0, 1, 2, 3, 4)
    blocks = run.max_seed_blocks(seeds)  # still undecided at every block: up to the cap
    assert blocks == 3 and calls == [(4, seeds)] + [(4, run.extension_seeds(seeds, k)) for k in range(1, blocks)]
    assert out["seed_blocks"] == blocks and len(out["seeds"]) == 5 * blocks
    half = out["halves"]["generalization"]
    assert half["result"] == "inconclusive"
    assert half["seeds"] == 5 * blocks and [s["seeds"] for s in half["simple_effects"]] == [5 * blocks] * 2


@pytest.mark.parametrize("quick", [False, True])
def test_quick_skips_the_settings_reported_beside_and_the_full_table_runs_each(monkeypatch, quick):
    """The other settings (control, deep narrow net) are never part of a label: ``--quick``
    leaves them out (its budget goes to the judged rows), the full table trains each once."""
    from _arms import arm, noisy, point

    calls = []

    def fake_run_arms(specs, seeds, peers=(), progress=False, desc=""):
        calls.append(desc)
        rng = np.random.default_rng(len(calls))
        return [arm([point(lr, [6] * 5, noisy(0.02, rng=rng), noisy(0.5, rng=rng)) for lr in (0.01, 0.1)])] * 2

    monkeypatch.setattr(run, "run_arms", fake_run_arms)
    row = REGISTRY["adam"]
    out = run.run_row(row, (0, 1, 2, 3, 4), quick=quick)
    assert len(row.settings) == 2
    if quick:
        assert calls == ["adam"] and out["settings"] == {}
    else:
        assert calls[0] == "adam" and set(out["settings"]) == set(row.settings)
        assert [c for c in calls if c.startswith("adam (") and "seeds" not in c] == [
            f"adam ({name})" for name in row.settings
        ]
