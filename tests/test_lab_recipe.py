"""The measured lecture table: registry, verdict logic, resume, CLI, and a tiny real run."""

import json
import math

import numpy as np
import pytest

from jaxopt_lectures import cli
from jaxopt_lectures.lab import recipe, report

ISSUE_NAMES = (
    "adagrad rmsprop momentum adam warmup decay adamw dropout weight_decay l1 init pretrain cnn skip "
    "batchnorm layernorm accuracy_loss mse_loss more_data mixup flip entropy graph early_stopping sigmoid "
    "maxout batch_size"
).split()


def test_registry_has_every_technique_of_the_lectures():
    assert set(recipe.REGISTRY) == set(ISSUE_NAMES)


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_baseline_and_variant_differ_in_exactly_the_named_knob(name):
    entry = recipe.REGISTRY[name]
    paths = recipe.differing_paths(entry.baseline, entry.variant)
    assert paths, f"{name}: baseline and variant are identical"
    outside = [p for p in paths if not (p == entry.knob or p.startswith(entry.knob + "."))]
    assert not outside, f"{name}: differs outside its knob {entry.knob!r}: {outside}"
    assert entry.step in recipe.STEPS and entry.claim in recipe.CLAIMS
    assert entry.full_epochs >= entry.quick_epochs >= 1


def side(train, val, diverged=None):
    n = len(train)
    return {"train": list(train), "val": list(val), "train_acc": [0.9] * n, "val_acc": [0.8] * n,
            "diverged_step": diverged or [None] * n}


ADAM = recipe.REGISTRY["adam"]  # claims better optimization
DROPOUT = recipe.REGISTRY["dropout"]  # claims better generalization
FLIP = recipe.REGISTRY["flip"]  # a warning: worse generalization


@pytest.mark.parametrize(
    "entry, base, var, verdict, agrees, n_agree",
    [
        (ADAM, side([1.0, 1.1, 0.9], [1.2, 1.3, 1.1]), side([0.2, 0.25, 0.3], [0.5, 0.4, 0.45]), "both", "yes", 3),
        (ADAM, side([1.0, 1.1, 0.9], [1.0, 1.0, 1.0]), side([1.0, 1.1, 0.9], [1.0, 1.0, 1.0]), "neither", "no", 0),
        (ADAM, side([1.0, 1.0, 1.0], [1.0] * 3), side([0.5, 0.5, 1.2], [1.0] * 3), "neither", "mixed", 2),
        (DROPOUT, side([0.1] * 3, [1.5, 1.6, 1.4]), side([0.3] * 3, [1.1, 1.2, 1.0]), "better generalization", "yes", 3),
        (DROPOUT, side([0.1] * 3, [1.0] * 3), side([0.3] * 3, [1.3] * 3), "worse", "no", 0),
        (FLIP, side([0.1] * 3, [0.3] * 3), side([0.2] * 3, [0.6] * 3), "worse", "yes", 3),
        (ADAM, side([0.5] * 3, [0.5] * 3), side([0.2] * 3, [0.5] * 3), "better optimization", "yes", 3),
    ],
)
def test_verdict_on_synthetic_results(entry, base, var, verdict, agrees, n_agree):
    row = recipe.judge_row(entry, [base, var], [0, 1, 2], quick=True)
    assert (row["verdict"], row["agrees"], row["seeds_agreeing"]) == (verdict, agrees, n_agree)
    assert row["train"]["without"]["mean"] == pytest.approx(np.mean(base["train"]))


def test_noise_within_the_seed_spread_is_not_an_effect():
    # mean change −0.05 but paired changes spread ±0.3: no effect shows
    assert recipe._direction([1.0, 1.0, 1.0], [0.6, 1.3, 0.95]) == 0
    assert recipe._direction([1.0, 1.0, 1.0], [0.9, 0.89, 0.91]) == -1


def test_a_diverged_run_is_reported_in_its_row_not_raised():
    base = side([1.0] * 3, [1.0] * 3)
    var = side([math.inf, 0.5, 0.5], [math.inf, 0.6, 0.6], diverged=[17, None, None])
    row = recipe.judge_row(ADAM, [base, var], [0, 1, 2], quick=True)
    assert row["verdict"] == "worse"
    assert row["diverged"] == ["with, seed 0: diverged at step 17"]
    cells = report.row_cells(row)
    assert "1 runs diverged" in cells[5] and "diverged" in cells[3]
    table = {"rows": [row], "agree": {"yes": 0, "mixed": 0, "no": 1}, "seeds": [0, 1, 2], "quick": True,
             "wall_s": 1.0, "compile_s": 0.5, "rows_reused": 0, "rule": "r"}
    assert "with, seed 0: diverged at step 17" in report.markdown(table)
    assert "with, seed 0: diverged at step 17" in report.terminal(table)


def fake_run(counter):
    def run(entry, seeds, quick, progress):
        counter.append(entry.name)
        if entry.name == "rmsprop" and counter.count("rmsprop") == 1:
            raise KeyboardInterrupt
        k = len(entry.name) / 10
        base, var = side([k] * len(seeds), [k] * len(seeds)), side([k / 2] * len(seeds), [k] * len(seeds))
        return recipe.judge_row(entry, [base, var], seeds, quick)

    return run


def test_rerun_after_an_interruption_skips_finished_rows(tmp_path):
    entries = recipe.select(["adagrad", "rmsprop", "momentum"])
    calls = []
    with pytest.raises(KeyboardInterrupt):
        report.run_table(entries, [0, 1], True, tmp_path, progress=False, run_entry=fake_run(calls), log=lambda s: None)
    assert calls == ["adagrad", "rmsprop"]
    assert (tmp_path / "rows" / "adagrad.json").exists() and not (tmp_path / "rows" / "rmsprop.json").exists()
    table = report.run_table(entries, [0, 1], True, tmp_path, progress=False, run_entry=fake_run(calls), log=lambda s: None)
    assert calls == ["adagrad", "rmsprop", "rmsprop", "momentum"]
    assert table["rows_reused"] == 1 and [r["name"] for r in table["rows"]] == ["adagrad", "rmsprop", "momentum"]
    # a different budget is a different row: nothing reused
    other = report.run_table(entries[:1], [0, 1], False, tmp_path, progress=False, run_entry=fake_run(calls),
                             log=lambda s: None)
    assert other["rows_reused"] == 0
    paths = report.write_reports(table, tmp_path)
    assert [p.name for p in paths] == ["recipe.md", "recipe.json", "recipe.csv", "recipe.png"]
    assert json.loads(paths[1].read_text())["rows"][0]["name"] == "adagrad"
    assert paths[2].read_text().count("\n") == 4 and paths[3].stat().st_size > 10_000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["recipe", "--only", "dropout,nonsense"], "unknown technique(s) 'nonsense'"),
        (["recipe", "--seeds", "0"], "--seeds 0 is out of range"),
        (["recipe", "--out", "/proc/definitely/not/writable"], "is not a writable directory"),
    ],
)
def test_cli_bad_arguments_give_one_line_and_exit_code_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_tiny_real_pipeline_end_to_end(tmp_path, capsys, monkeypatch):
    """The whole pipeline on one cheap row with 1 epoch and 1 seed (CI-sized)."""
    entry = recipe.REGISTRY["momentum"]
    tiny = recipe.Entry(**{**entry.__dict__, "quick_epochs": 1})
    monkeypatch.setitem(recipe.REGISTRY, "momentum", tiny)
    assert cli.main(["recipe", "--quick", "--only", "momentum", "--seeds", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Momentum" in out and "wrote" in out
    table = json.loads((tmp_path / "recipe.json").read_text())
    row = table["rows"][0]
    assert row["name"] == "momentum" and row["seeds"] == [0] and row["agrees"] in ("yes", "no", "mixed")
    assert all(math.isfinite(row[m][s]["mean"]) for m in ("train", "val") for s in ("without", "with"))
    assert table["wall_s"] > 0 and table["compile_s"] > 0


def test_rows_in_worker_processes_equal_rows_run_in_process(tmp_path):
    """--jobs 2: the same numbers as running the rows one after another here."""
    tiny = [recipe.Entry(**{**recipe.REGISTRY[n].__dict__, "quick_epochs": 1}) for n in ("momentum", "adam")]
    here = report.run_table(tiny, [0], True, None, progress=False, log=lambda s: None)
    there = report.run_table(tiny, [0], True, tmp_path, progress=False, log=lambda s: None, jobs=2)
    for a, b in zip(here["rows"], there["rows"]):
        assert a["name"] == b["name"]
        for metric in ("train", "val"):
            assert a[metric] == b[metric]
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["adam.json", "momentum.json"]


@pytest.mark.parametrize("runs, devices, expected", [(6, 1, 1), (6, 8, 6), (6, 4, 3), (3, 2, 1), (10, 8, 5), (4, 8, 4)])
def test_rows_use_the_largest_device_count_that_divides_their_runs(runs, devices, expected):
    assert recipe.runs_per_device_split(runs, devices) == expected
