"""CI runs every example (``--small``) and every notebook (``JOL_NOTEBOOK_SMALL=1``) so they never rot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _env(**extra):
    env = dict(os.environ, JOL_SMALL="1", JOL_NOTEBOOK_SMALL="1", MPLBACKEND="Agg", **extra)
    return env


def test_there_is_an_example_per_lecture_topic():
    names = {p.stem for p in EXAMPLES}
    assert {
        "quickstart",
        "compose_optimizer",
        "train_cnn_nnx",
        "schedules",
        "regularization",
        "dropout",
        "semi_supervised",
        "add_recipe_entry",
    } <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_small(script, tmp_path):
    args = [sys.executable, str(script), "--small"]
    if script.stem in ("schedules", "add_recipe_entry"):
        args += ["--out", str(tmp_path)]
    proc = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_small_and_is_stored_without_outputs(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs before committing"
    os.environ.update(JOL_NOTEBOOK_SMALL="1", MPLBACKEND="Agg")
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook should show its figures inline"
