"""The optimizers on standardised vs badly scaled digits (figures.optimizer_conditioning, issue 24)."""

import numpy as np
import pytest

from jaxopt_lectures import cli
from jaxopt_lectures.lab import figures


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_updates_to_target_is_the_first_epoch_at_target_times_its_updates():
    acc = np.array([[0.5, 0.99, 0.98, 1.0], [0.5, 0.6, np.nan, np.nan], [0.995, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(figures.updates_to_target(acc, 9, 0.99), [18, np.inf, 9])


def test_tuned_eta_is_the_fastest_with_ties_to_the_lower_final_loss():
    reached = np.array([[90.0, 90.0], [45.0, 45.0], [45.0, 45.0], [np.inf, 27.0]])
    loss = np.array([[0.1, 0.1], [0.02, 0.03], [0.01, 0.01], [np.nan, 0.001]])
    assert figures._pick_fastest(reached, loss, budget=90) == 2  # 3: a failure counts as 2 x 90


def test_tiny_study_returns_the_plotted_numbers_and_draws_the_png(tmp_path):
    study = figures.optimizer_conditioning(
        seeds=(0,), epochs=2, optimizers=("sgd", "adam"), grids={"sgd": (0.1, 0.3), "adam": (3e-3, 1e-2)}
    )
    assert study.settings == ("standardised", "ill-conditioned") and study.updates_per_epoch == 9
    assert study.budget == 18 and study.feature_scale.shape == (64,)
    assert study.condition_number["standardised"] < 1e3 < 1e5 < study.condition_number["ill-conditioned"]
    rows = study.table()
    assert [(r["setting"], r["optimizer"]) for r in rows] == [
        (s, o) for s in ("standardised", "ill-conditioned") for o in ("sgd", "adam")
    ]
    for r in rows:
        assert r["learning_rate"] in study.grid[r["optimizer"]] and len(r["updates"]) == 1
        assert all(u is None or (u % 9 == 0 and 9 <= u <= 18) for u in r["updates"])
        assert r["ratio_to_sgd"] > 0 and not r["edge"]  # a 2-point grid has no inside
    for k, loss in study.train_loss.items():
        assert loss.shape == (1, 2) and study.grid_updates[k].shape == (2, 1)
    assert np.all(np.isfinite(study.train_loss[("standardised", "adam")]))
    [png] = figures.plot_conditioning(study, tmp_path)
    assert png.name == "optimizers_conditioning.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0"], "--seeds 0 is out of range; allowed: integers in [1, 1000]"),
        (["--epochs", "0"], "--epochs 0 is out of range; allowed: integers in [1, 10000]"),
        (["--scale-seed", "-1"], "--scale-seed -1 is out of range; allowed: integers in [0, 4294967295]"),
    ],
)
def test_cli_rejects_bad_numbers_on_one_line(tmp_path, capsys, argv, message):
    assert cli.main(["optimizers-conditioning", "--out", str(tmp_path), *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == f"jaxopt-lectures optimizers-conditioning: error: {message}"


def test_cli_help_says_what_is_compared(capsys):
    with pytest.raises(SystemExit):
        cli.main(["optimizers-conditioning", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("10^u_j", "U(-2, 1)", "99% training accuracy", "--scale-seed", "--epochs"):
        assert words in text
