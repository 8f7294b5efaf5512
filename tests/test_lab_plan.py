"""The planner (issue 10): arms that differ only in traced knobs train in one compiled program."""

import copy
import json

import numpy as np
import pytest

import jaxopt_lectures as jol
from jaxopt_lectures.lab import plan, report, run
from jaxopt_lectures.lab.claims.rows import REGISTRY

QUICK_SEEDS = (0, 1, 2)


def _programs(seeds, quick, max_runs):
    arms = run.table_arms(seeds, quick)
    return arms, {run.group_id(run.program_group(a, arms, max_runs)) for a in arms}


@pytest.mark.parametrize(
    "quick, max_runs, expected", [(True, None, 74), (False, None, 74), (True, 48, 76), (False, 48, 78)]
)
def test_the_table_trains_fewer_programs_than_arms(quick, max_runs, expected):
    """84 distinct arms (66 rows' arms: accuracy_loss's measure the test loss every epoch, for its
    matched-training-loss reading, so full_batch no longer shares them; the optimizer rows'
    control and deep-narrow settings, the init and normalization rows' deep narrow net: LeCun,
    He, He + batch norm, He + layer norm, and the dropout x activation 2 x 2's sigmoid arm without
    dropout); merged where they differ only in traced knobs (arms with and without the test curve
    apart): 74 programs, or 78 on the CPU at 5 seeds, where the runs of one program are capped
    (wider programs cost more per run; 76 at 3 seeds; how arms pack under the cap follows their
    fingerprints, so it moves when those do)."""
    arms, programs = _programs((0, 1, 2, 3, 4) if not quick else QUICK_SEEDS, quick, max_runs)
    assert len(arms) == 84 and len(programs) == expected, (len(arms), len(programs))
    assert plan.max_program_runs("cpu") == 48 and plan.max_program_runs("gpu") is None


def _key(name, side):
    return run.row_arms(REGISTRY[name], QUICK_SEEDS, True)[side].program


def test_cheap_knobs_share_a_program_and_costly_terms_or_other_settings_do_not():
    """The overfitting setting's plain, L1 and L2 arms differ only in traced, cheap knobs: one
    program. Dropout and mixup (random numbers for every run) and the unlabeled pass keep their
    own; so do a different optimizer, model, loss, budget or early stopping."""
    shared = {
        _key(n, s)
        for n, s in [
            ("dropout", 0),
            ("l1", 1),
            ("l2_in_loss", 1),
            ("l1_vs_l2_sparsity", 0),
            ("l1_vs_l2_sparsity", 1),
            ("cnn", 0),
            ("mixup", 0),
        ]
    }
    assert len(shared) == 1
    for name, side in [
        ("dropout", 1),
        ("mixup", 1),
        ("adamw_vs_adam", 1),
        ("early_stopping", 1),
        ("cnn", 1),
        ("dropout_test_scaling", 0),
        ("more_data", 0),
    ]:
        assert _key(name, side) not in shared, name
    arms = run.table_arms(QUICK_SEEDS, True)
    group = run.program_group(run.row_arms(REGISTRY["l1"], QUICK_SEEDS, True)[1], arms, None)
    assert len(group) == 6 and [m.fingerprint for m in group] == sorted(m.fingerprint for m in group)
    assert _key("entropy", 1) == _key("graph", 1) != _key("entropy", 0)  # one unlabeled pass
    # weight decay is an injected optimizer knob: the sgd_wd baseline (0) and variant share a program
    wd = run.row_arms(REGISTRY["weight_decay"], QUICK_SEEDS, True)
    assert wd[0].program == wd[1].program and wd[0].fingerprint != wd[1].fingerprint


def test_a_program_holds_at_most_max_runs_runs_counting_shared_configs_once():
    arms = run.table_arms((0, 1, 2, 3, 4), False)
    for spec in arms:
        group = run.program_group(spec, arms, 48)
        configs = {json.dumps(c, sort_keys=True) for m in group for c in plan.arm_configs(m.setting, m.grid)}
        assert len(group) == 1 or len(configs) * 5 <= 48, [m.fingerprint for m in group]
        assert group == run.program_group(spec, list(reversed(arms)), 48)  # order of the peers does not matter


def test_program_key_keeps_costly_terms_apart_and_traces_their_values():
    s = plan.canonical_setting(REGISTRY["entropy"].baseline, {})  # the weight-0 term is gone
    semi, other = copy.deepcopy(s), copy.deepcopy(s)
    semi["hparams"], other["hparams"] = {"entropy_weight": 0.1}, {"entropy_weight": 0.3, "graph_weight": 1.0}
    assert plan.program_key(semi, 5, (0,)) == plan.program_key(other, 5, (0,)) != plan.program_key(s, 5, (0,))
    l1 = copy.deepcopy(s)
    l1["hparams"] = {"l1": 1e-4}
    assert plan.program_key(l1, 5, (0,)) == plan.program_key(s, 5, (0,))
    assert plan.program_key(s, 5, (0,)) != plan.program_key(s, 6, (0,)) != plan.program_key(s, 5, (1,))


def test_arm_configs_fix_every_traced_knob():
    s = {"optimizer": {"name": "sgd_wd", "learning_rate": 0.1, "weight_decay": 0.0}, "hparams": {"dropout": 0.2}}
    grid = {"optimizer.learning_rate": (0.01, 0.1), "hparams.l1": (1e-4,)}
    assert plan.arm_configs(s, grid) == [
        {"learning_rate": 0.01, "weight_decay": 0.0, "dropout": 0.2, "l1": 1e-4},
        {"learning_rate": 0.1, "weight_decay": 0.0, "dropout": 0.2, "l1": 1e-4},
    ]
    assert plan.arm_configs({"optimizer": {"learning_rate": 0.3}}, {}) == [{"learning_rate": 0.3}]


def _tiny_overfit_arms():
    base = copy.deepcopy(REGISTRY["dropout"].baseline)
    base["data"] = {"name": "digits"}
    base["model"]["hidden"] = [16]
    grid = {"optimizer.learning_rate": (1e-3, 3e-3)}
    variant = copy.deepcopy(base)
    variant["hparams"] = {"l2": 1e-3}
    l1 = copy.deepcopy(base)
    l1["hparams"] = {"l1": 1e-4}
    seeds = (0, 1)
    return seeds, [run.arm_spec(s, grid, 2, seeds) for s in (base, variant, l1)]


def test_an_arm_in_a_group_matches_the_arm_trained_alone():
    """Each arm of a group keeps its own runs: its selection and numbers are those of the arm
    trained on its own, to float rounding (a wider vmapped program rounds differently)."""
    seeds, specs = _tiny_overfit_arms()
    together = run.run_arms(specs, seeds)
    for spec, got in zip(specs, together):
        alone = run.run_arms([spec], seeds)[0]
        assert got["chosen"] == alone["chosen"] and got["grid"] == alone["grid"]
        for key in ("train", "val", "test", "test_acc"):
            np.testing.assert_allclose(got[key], alone[key], rtol=1e-4, err_msg=key)
        assert got["program"] != alone["program"]


def test_a_group_gives_the_same_numbers_whatever_asked_for_it(tmp_path, monkeypatch):
    """The group is fixed by its members, not by the order they were asked in nor by which arm
    came first; the arm cache keeps each member under its program (another program: retrained)."""
    seeds, specs = _tiny_overfit_arms()
    monkeypatch.setenv(run.ARM_CACHE_ENV, str(tmp_path / "arms"))
    first = run.run_arms([specs[1]], seeds, peers=specs)[0]
    cached = {p.name for p in (tmp_path / "arms").glob("*.json")}
    assert cached == {f"{s.fingerprint}.json" for s in specs}  # the whole group was trained and kept
    monkeypatch.delenv(run.ARM_CACHE_ENV)
    again = run.run_arms([specs[2], specs[0], specs[1]], seeds)[2]
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    monkeypatch.setenv(run.ARM_CACHE_ENV, str(tmp_path / "arms"))
    path = tmp_path / "arms" / f"{specs[0].fingerprint}.json"
    stale = json.loads(path.read_text())
    stale["program"], stale["train"] = "another", [123.0, 123.0]
    path.write_text(json.dumps(stale))
    assert run.run_arms([specs[0]], seeds)[0]["train"] != [123.0, 123.0]  # trained alone: another program


def test_dispatch_order_is_a_permutation_that_starts_with_new_programs():
    rows = list(REGISTRY.values())
    order = run.dispatch_order(rows, QUICK_SEEDS, True)
    assert sorted(r.name for r in order) == sorted(REGISTRY)
    arms = run.table_arms(QUICK_SEEDS, True)
    seen: set[str] = set()
    lead = []
    for row in order:
        programs = {run.group_id(run.program_group(a, arms)) for a in run.row_arms(row, QUICK_SEEDS, True)}
        if programs & seen:
            break
        lead.append(row.name)
        seen |= programs
    assert len(lead) >= 15 and lead[0] == rows[0].name


def test_footer_counts_programs_and_arms():
    row = {
        "name": "x",
        "label": "yes",
        "regime": {"reached": None},
        "arms": {"without": {"fingerprint": "a", "program": "p"}, "with": {"fingerprint": "b", "program": "p"}},
    }
    table = {
        "rows": [row],
        "seeds": [0],
        "quick": True,
        "wall_s": 1.0,
        "compile_s": 0.5,
        "compiles": 3,
        "rows_reused": 0,
        "rule": "r",
        "programs": 1,
        "arms": 2,
    }
    assert "1 training programs for 2 arms" in " ".join(report._footer(table))


def test_the_program_lock_does_not_follow_a_planted_link(tmp_path, capsys):
    target = tmp_path / "elsewhere"
    cache = tmp_path / "arms"
    cache.mkdir()
    (cache / "program-abc.lock").symlink_to(target)
    ran = []
    with run._program_lock(cache, "abc"):  # refused as a lock (one line), the group still trains (audit v2 L10)
        ran.append(True)
    assert ran and not target.exists()
    assert "training the program here without it" in capsys.readouterr().err
    with run._program_lock(cache, "def"):  # an ordinary lock file is created and released
        pass
    assert (cache / "program-def.lock").is_file()


def test_only_rows_read_at_matched_training_loss_measure_the_test_loss_every_epoch():
    """The per-epoch test loss costs an evaluation per epoch: only "not better" generalization
    claims (not ties) ask for it, and it is part of the arm's identity and program."""
    needing = sorted(n for n, row in REGISTRY.items() if run.needs_test_curve(row))
    assert needing == sorted(
        ["adagrad", "rmsprop", "momentum", "adam", "nesterov", "rmsprop_vs_adagrad", "warmup", "decay", "accuracy_loss"]
    )
    with_curve, plain = (
        run.row_arms(REGISTRY["accuracy_loss"], QUICK_SEEDS, True),
        run.row_arms(REGISTRY["full_batch"], QUICK_SEEDS, True),
    )
    assert with_curve[0].setting["test_curve"] is True and "test_curve" not in plain[0].setting
    assert with_curve[0].fingerprint != plain[0].fingerprint and with_curve[0].program != plain[0].program


@pytest.mark.parametrize(
    ("spec", "name", "reference"),
    [
        ({"name": "adam", "learning_rate": 1e-2, "eps": 1e-2}, "eps", lambda: jol.adam(1e-2, eps=1e-2)),
        ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.5}, "momentum", lambda: jol.sgd(0.1, momentum=0.5)),
        (
            {"name": "momentum", "learning_rate": 0.1, "beta": 0.99, "variant": "ema"},
            "beta",
            lambda: jol.momentum(0.1, beta=0.99, variant="ema"),
        ),
    ],
)
def test_adams_eps_and_the_momentum_coefficient_are_injected_and_step_like_the_fixed_optimizer(spec, name, reference):
    """Issue 22 item 5 (Choi et al.): ε and β are tuned like η, as injected state, so an arm's
    (η, ε) or (η, β) grid is one program, and each point steps as the optimizer built with it."""
    import jax
    import jax.numpy as jnp

    tx, ref = plan.make_optimizer(spec, 100), reference()
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": jnp.zeros(2)}
    grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
    state, ref_state = tx.init(params), ref.init(params)
    assert float(state.hyperparams[name]) == pytest.approx(spec[name])
    for _ in range(3):
        u, state = tx.update(grads, state, params)
        r, ref_state = ref.update(grads, ref_state, params)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(r), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9)
    other = {**spec, name: spec[name] / 2}
    setting = {"optimizer": spec, "data": {"name": "digits"}}
    assert plan.program_key(setting, 5, [0]) == plan.program_key({**setting, "optimizer": other}, 5, [0])
    assert plan.arm_configs(setting, {f"optimizer.{name}": (1.0, 2.0)})[1][name] == 2.0


def test_plain_sgd_keeps_its_structure_apart_from_sgd_with_momentum():
    sgd = {"optimizer": {"name": "sgd", "learning_rate": 0.1}, "data": {}}
    heavy = {"optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, "data": {}}
    assert plan.program_key(sgd, 5, [0]) != plan.program_key(heavy, 5, [0])
    assert "momentum" not in plan.make_optimizer(sgd["optimizer"], 10).init({"w": np.zeros(2)}).hyperparams


def test_program_group_takes_an_int_none_or_backend_and_refuses_other_strings():
    arms = run.table_arms(QUICK_SEEDS, True)
    spec = arms[0]
    assert spec in run.program_group(spec, arms, "backend") and spec in run.program_group(spec, arms, None)
    with pytest.raises(ValueError, match="max_runs='gpu'"):
        run.program_group(spec, arms, "gpu")
