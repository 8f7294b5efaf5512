"""The measured lecture table: registry, verdict logic, resume, CLI, and a tiny real run."""

import json
import math
import os

import jax
import numpy as np
import pytest
from _arms import arm, point

from jaxopt_lectures import cli
from jaxopt_lectures.lab import recipe, report, run, verdict


def arm_pair(k: float, n: int):
    """A baseline and a variant twice as fast to the target, on ``n`` seeds (synthetic)."""
    base = arm([point(0.1, [8] * n, [k] * n, [k + 0.5] * n)])
    var = arm([point(0.1, [4] * n, [k / 2] * n, [k + 0.5] * n)])
    return base, var


def table_of(rows, seeds):
    return {
        "rows": rows,
        "seeds": list(seeds),
        "quick": True,
        "wall_s": 1.0,
        "compile_s": 0.5,
        "compiles": 3,
        "rows_reused": 0,
        "rule": recipe.RULE,
        "jobs": 1,
    }


def test_reports_render_every_row_with_intervals_and_results():
    row = verdict.judge(recipe.REGISTRY["adam"], *arm_pair(1.0, 3), [0, 1, 2])
    table = table_of([row], [0, 1, 2])
    md = report.markdown(table)
    # 4 against 8 epochs, each crossed somewhere within its epoch: x0.47 with that rounding in the interval
    assert "updates to training accuracy >= 0.99: x0.47 [0.37, 0.58] -> holds" in md, md
    assert "reached 3/3 vs 3/3" in md and "Multiplicity" in md
    assert "Rule: v2" in report.terminal(table)
    assert report.to_csv(table).count("\n") == 3  # a header and one line per half
    json.loads(json.dumps(table), parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))


def fake_run(counter):
    def fake(entry, seeds, quick, progress):
        counter.append(entry.name)
        if entry.name == "rmsprop" and counter.count("rmsprop") == 1:
            raise KeyboardInterrupt
        return verdict.judge(entry, *arm_pair(len(entry.name) / 10, len(seeds)), seeds)

    return fake


def test_rerun_after_an_interruption_skips_finished_rows(tmp_path):
    entries = recipe.select(["adagrad", "rmsprop", "momentum"])
    calls = []
    with pytest.raises(KeyboardInterrupt):
        report.run_table(entries, [0, 1], True, tmp_path, progress=False, run_entry=fake_run(calls), log=lambda s: None)
    assert calls == ["adagrad", "rmsprop"]
    assert (tmp_path / "rows" / "adagrad.json").exists() and not (tmp_path / "rows" / "rmsprop.json").exists()
    table = report.run_table(
        entries, [0, 1], True, tmp_path, progress=False, run_entry=fake_run(calls), log=lambda s: None
    )
    assert calls == ["adagrad", "rmsprop", "rmsprop", "momentum"]
    assert table["rows_reused"] == 1 and [r["name"] for r in table["rows"]] == ["adagrad", "rmsprop", "momentum"]
    # a different budget is a different row: nothing reused
    other = report.run_table(
        entries[:1], [0, 1], False, tmp_path, progress=False, run_entry=fake_run(calls), log=lambda s: None
    )
    assert other["rows_reused"] == 0
    paths = report.write_reports(table, tmp_path)
    names = ["recipe.md", "recipe.json", "recipe.csv", "recipe.png", "recipe_curves.png", "index.html"]
    assert [p.name for p in paths] == names
    assert json.loads(paths[1].read_text())["rows"][0]["name"] == "adagrad"
    assert paths[2].read_text().count("\n") == 1 + 2 * 3 and paths[3].stat().st_size > 10_000
    assert paths[4].stat().st_size > 10_000
    assert 'id="row-momentum"' in paths[5].read_text(encoding="utf-8")  # the HTML report (issue 23)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["recipe", "--only", "dropout,nonsense"], "unknown technique(s) 'nonsense'"),
        (["recipe", "--seeds", "0"], "--seeds 0 is out of range"),
        (["recipe", "--seeds", "1,x"], "is not a count or a comma-separated list"),
        (["recipe", "--seeds", "3,3"], "a list needs distinct seeds"),
        (["recipe", "--explain", "nonsense"], "known: adagrad"),
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
    tiny = recipe.Entry(
        **{**entry.__dict__, "quick_epochs": 1, "tune": {"optimizer.learning_rate": (0.01, 0.1)}, "tune_variant": {}}
    )
    monkeypatch.setitem(recipe.REGISTRY, "momentum", tiny)
    monkeypatch.setenv(run.ARM_CACHE_ENV, str(tmp_path / "arms"))
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    argv = ["recipe", "--quick", "--only", "momentum", "--seeds", "4,7", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Momentum" in out and "wrote" in out
    # issue 11: the main job says which backend and device it runs on
    assert f"running on {jax.default_backend()} (" in out and f"jax {jax.__version__}" in out
    # issue 11: no process of the main job preallocates the GPU (workers inherit this)
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    table = json.loads((tmp_path / "recipe.json").read_text())
    row = table["rows"][0]
    assert row["name"] == "momentum" and row["seeds"] == [4, 7]
    assert row["label"] in verdict.LABELS
    assert set(row["halves"]) == {"optimization", "generalization"}
    for arm_name in ("without", "with"):
        curve = row["arms"][arm_name]["eta_curve"]
        assert [c["config"] for c in curve] == [{"optimizer.learning_rate": v} for v in (0.01, 0.1)]
        assert all(math.isfinite(c["train"]) for c in curve)
    assert {"quote", "regime", "seeds", "seed_blocks"} <= set(row)
    assert table["wall_s"] > 0 and table["compile_s"] > 0
    # the number of XLA compilations a row costs stays small: one program per arm, not one per grid point
    assert 0 < table["compiles"] <= 120, table["compiles"]


def test_rows_in_worker_processes_equal_rows_run_in_process(tmp_path):
    """--jobs 2: the same numbers as running the rows one after another here."""
    tiny = [
        recipe.Entry(
            **{
                **recipe.REGISTRY[n].__dict__,
                "quick_epochs": 1,
                "tune": {"optimizer.learning_rate": (0.01, 0.1)},
                "tune_variant": {},
            }
        )
        for n in ("momentum", "adam")
    ]
    here = report.run_table(tiny, [0], True, None, progress=False, log=lambda s: None)
    there = report.run_table(tiny, [0], True, tmp_path, progress=False, log=lambda s: None, jobs=2)
    for a, b in zip(here["rows"], there["rows"]):
        assert a["name"] == b["name"]
        assert a["halves"] == b["halves"] and a["arms"] == b["arms"]
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["adam.json", "momentum.json"]


@pytest.mark.parametrize("runs, devices, expected", [(6, 1, 1), (6, 8, 6), (6, 4, 3), (3, 2, 1), (10, 8, 5), (4, 8, 4)])
def test_rows_use_the_largest_device_count_that_divides_their_runs(runs, devices, expected):
    assert recipe.runs_per_device_split(runs, devices) == expected


def test_case_076_only_with_no_names_is_an_error_not_all_rows(capsys):
    assert cli.main(["recipe", "--only", " , "]) == 2
    assert "names no technique" in capsys.readouterr().err


def test_case_077_a_row_named_twice_runs_once():
    assert [r.name for r in recipe.select(["adam", "adam", "dropout"])] == ["adam", "dropout"]


def test_case_133_the_json_report_is_strict_json_even_with_diverged_runs():
    base = arm([point(0.1, [8] * 3, [1.0] * 3, [1.0] * 3)])
    var = arm([point(0.1, [None, 4, 4], [np.nan, 0.5, 0.5], [np.nan, 0.9, 0.9], diverged=[2, -1, -1])])
    row = verdict.judge(recipe.REGISTRY["adam"], base, var, [0, 1, 2])
    text = json.dumps(row, allow_nan=False)  # raises on NaN/Infinity
    assert json.loads(text)["arms"]["with"]["eta_curve"][0]["diverged"] == 1
    assert "reached 3/3 vs 2/3" in report.markdown(table_of([row], [0, 1, 2]))  # the diverged run is counted


@pytest.mark.parametrize("content", [b"\xff\xfe garbage", b"[]", b"null", b"{}"])
def test_case_087_088_089_damaged_row_files_are_redone_with_a_warning(tmp_path, content):
    entries = recipe.select(["adam"])
    report.run_table(entries, [0, 1], True, tmp_path, progress=False, run_entry=fake_run([]), log=lambda s: None)
    path = tmp_path / "rows" / "adam.json"
    saved = json.loads(path.read_text())
    if content == b"{}":  # the right fingerprint, every other key missing
        content = json.dumps({"fingerprint": saved["fingerprint"]}).encode()
    path.write_bytes(content)
    calls, logs = [], []
    table = report.run_table(
        entries, [0, 1], True, tmp_path, progress=False, run_entry=fake_run(calls), log=logs.append
    )
    assert calls == ["adam"] and table["rows_reused"] == 0
    assert json.loads(path.read_text())["name"] == "adam"
    assert sum("redoing the row" in line for line in logs) == 1


def test_case_091_a_directory_in_place_of_a_row_file_does_not_lose_the_row(tmp_path):
    (tmp_path / "rows" / "adam.json").mkdir(parents=True)
    table = report.run_table(
        recipe.select(["adam"]), [0, 1], True, tmp_path, progress=False, run_entry=fake_run([]), log=lambda s: None
    )
    assert json.loads((tmp_path / "rows" / "adam.json").read_text())["name"] == table["rows"][0]["name"]


def test_case_078_a_directory_where_a_report_goes_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "recipe.md").mkdir()
    assert cli.main(["recipe", "--quick", "--only", "adam", "--out", str(tmp_path)]) == 2
    assert "recipe.md there is a directory" in capsys.readouterr().err
    assert not (tmp_path / "rows").exists()


def test_case_138_094_the_out_probe_never_writes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".write-test").symlink_to(victim)
    assert cli._writable_dir(out) == out
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == [".write-test"]  # no probe left behind


def test_case_095_reports_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        report.atomic_write(tmp_path / "r.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "r.md").stat().st_mode & 0o777 == 0o644


def test_case_084_a_worker_exits_when_its_parent_is_killed():
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    grandchild = (
        "import time; from jaxopt_lectures.lab.report import _die_with_parent; "
        "_die_with_parent(0.1); print('ready', flush=True); time.sleep(60)"
    )
    child = (
        "import subprocess, sys, os\n"
        f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)\n"
        "p.stdout.readline(); print(p.pid, flush=True); os._exit(0)  # the parent dies like kill -9\n"
    )
    pid = int(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120).stdout)
    status = Path(f"/proc/{pid}/status")
    deadline = time.time() + 10
    while time.time() < deadline and status.exists() and "State:\tZ" not in status.read_text():
        time.sleep(0.1)
    alive = status.exists() and "State:\tZ" not in status.read_text()
    if alive:
        os.kill(pid, 9)
    assert not alive, "the orphaned worker is still running"


@pytest.mark.parametrize("blocked", ["flax"])
def test_cli_without_the_lab_extra_names_it_in_one_line(blocked):
    """Issue 12: a subcommand that needs ``[lab]`` says so instead of a raw ModuleNotFoundError."""
    import subprocess
    import sys

    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from jaxopt_lectures import cli\n"
        "sys.exit(cli.main(['recipe', '--list']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'jaxopt_lectures[lab]'" in lines[0] and repr(blocked) in lines[0], lines
    assert "Traceback" not in done.stderr


def test_a_term_switched_off_is_the_plain_arm():
    """Baselines that switch a trainer term off (weight 0) are one arm with the plain baseline of
    their setting (trained once, reported as shared); a term that is tuned is kept."""
    from jaxopt_lectures.lab import plan

    reg = recipe.REGISTRY
    plain = reg["adamw_vs_adam"].baseline
    for name in ("dropout", "l1", "l2_in_loss", "mixup"):
        grid = reg[name].grids(True)[0]
        assert plan.canonical_setting(reg[name].baseline, grid) == plan.canonical_setting(plain, grid), name
    assert plan.canonical_setting(reg["entropy"].baseline, {}) == plan.canonical_setting(reg["pretrain"].baseline, {})
    kept = plan.canonical_setting({"hparams": {"dropout": 0.0, "l2": 1e-4}}, {"hparams.dropout": (0.0, 0.3)})
    assert kept["hparams"] == {"dropout": 0.0, "l2": 1e-4}


def test_explain_says_which_rows_share_an_arm():
    """Issue 10: where a row reuses another row's runs, --explain says so (not independent)."""
    text = run.explain(recipe.REGISTRY["dropout"], [0, 1, 2], True)
    shared = [line for line in text.splitlines() if line.startswith("shared:")]
    assert any("baseline" in line and "adamw_vs_adam" in line and "mixup" in line for line in shared), shared
    assert any("variant" in line and "dropout_relu_vs_sigmoid" in line for line in shared), shared
    assert not [
        line
        for line in run.explain(recipe.REGISTRY["skip"], [0, 1, 2], True).splitlines()
        if line.startswith("shared:")
    ]


def test_a_figure_command_run_as_python_m_gives_one_line_not_a_traceback(tmp_path):
    """``python -m jaxopt_lectures.cli`` loads cli as __main__; the figure commands' usage error
    must still be the one main() catches (they import it from _cli_common, not from cli)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "jaxopt_lectures.cli", "batch-size", "--seeds", "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--seeds 0 is out of range" in proc.stderr


def _borderline_run(calls):
    """A fake row runner: on one block of seeds every half of ``adam`` holds alone (p = 0.02 <
    α/2) but not after the table's correction beside ``momentum``'s undecided halves (p = 0.5;
    Benjamini-Hochberg over 8 p-values: 0.02 x 8/2 = 0.08 > α); a second block decides it."""

    def fake(entry, seeds, quick, progress, blocks=1):
        calls.append((entry.name, blocks))
        row = verdict.judge(entry, *arm_pair(1.0, len(seeds)), seeds)
        p = 0.5 if entry.name != "adam" else 0.02 if blocks == 1 else 1e-4
        for h in row["halves"].values():
            h.update(result="holds" if p < 0.025 else "inconclusive", p_holds=p, p_fails=1 - p)
        row.update(seed_blocks=blocks, extendable=entry.name == "adam" and blocks < 2)
        return row

    return fake


def test_a_half_undecided_after_the_correction_gets_another_block_of_seeds(tmp_path):
    calls, logs = [], []
    entries = recipe.select(["adam", "momentum"])
    table = report.run_table(
        entries, [0, 1], False, tmp_path, progress=False, run_entry=_borderline_run(calls), log=logs.append
    )
    # decided alone on the first block, inconclusive in the corrected table: one more block, then decided
    assert calls == [("adam", 1), ("momentum", 1), ("adam", 2)]
    assert table["rows"][0]["seed_blocks"] == 2 and table["rows"][0]["label"] == "yes"
    assert any("inconclusive after the table's correction" in line and "adam" in line for line in logs), logs
    assert json.loads((tmp_path / "rows" / "adam.json").read_text())["seed_blocks"] == 2
    # the saved row is the extended one: a rerun reuses it and asks for nothing
    again = report.run_table(
        entries, [0, 1], False, tmp_path, progress=False, run_entry=_borderline_run(calls), log=logs.append
    )
    assert len(calls) == 3 and again["rows"][0]["label"] == "yes"


def test_a_row_that_does_not_grow_is_asked_once_and_a_row_at_the_cap_never():
    calls = []

    def stuck(entry, seeds, quick, progress, blocks=1):  # ignores ``blocks``: never more seeds
        calls.append((entry.name, blocks))
        return _borderline_run([])(entry, seeds, quick, progress)

    two = recipe.select(["adam", "momentum"])
    table = report.run_table(two, [0, 1], False, None, progress=False, run_entry=stuck)
    assert calls == [("adam", 1), ("momentum", 1), ("adam", 2)] and table["rows"][0]["label"] == "inconclusive"
    capped = []

    def at_cap(entry, seeds, quick, progress, blocks=1):
        row = _borderline_run(capped)(entry, seeds, quick, progress, blocks)
        row["extendable"] = False
        return row

    report.run_table(two, [0, 1], False, None, progress=False, run_entry=at_cap)
    assert capped == [("adam", 1), ("momentum", 1)]


def test_run_row_takes_at_least_the_blocks_asked_and_stops_at_the_cap():
    seeds = list(range(stats_cap := run.stats.SEED_SCHEDULE[-1]))
    assert run.max_seed_blocks(seeds) == 1 and run.max_seed_blocks(seeds[:5]) == stats_cap // 5
    assert run.max_seed_blocks(seeds[:3]) == stats_cap // 3 and run.max_seed_blocks([]) >= 1
