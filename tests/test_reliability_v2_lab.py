"""The lab's cases of the reliability audit v2 (shared/reviews/reliability-v2.md): resumes
that cannot lie (C03, C05, C10), the lab's files (L05-L13), the kernel cache (L16, L17) and
worker processes (L03, L20); each test named after its case."""

import functools
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jol
from jaxopt_lectures.lab import checkpoints


@pytest.fixture(scope="module")
def digits200():
    from jaxopt_lectures.lab import data

    return data.load_digits(train_size=200)


def _train(ds, epochs, checkpoint=None, keep=2):
    from jaxopt_lectures.lab import models, trainer

    mlp = functools.partial(models.MLP, (64, 16, 10))
    return trainer.train(
        mlp, ds, jol.sgd(0.1), epochs=epochs, seeds=(0,), checkpoint=checkpoint, checkpoint_keep=keep, progress=False
    )


def _halve_largest_state_file(step_dir):
    files = [f for f in (step_dir / "state").rglob("*") if f.is_file() and f.name != "commit_success.txt"]
    f = max(files, key=lambda f: f.stat().st_size)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


# --- C03: a damaged latest epoch falls back to the newest intact one --------------------------


def test_c03_a_damaged_latest_epoch_resumes_from_the_newest_intact_one(tmp_path, digits200):
    ck = tmp_path / "ck"
    _train(digits200, 3, ck)  # keeps epochs 2 and 3
    _halve_largest_state_file(ck / "3")
    with pytest.warns(RuntimeWarning, match=r"epoch 3 damaged .*is damaged.*resuming from epoch 2, the newest intact"):
        resumed = _train(digits200, 4, ck)
    fresh = _train(digits200, 4)
    np.testing.assert_array_equal(resumed.train_loss, fresh.train_loss)
    np.testing.assert_array_equal(resumed.test_loss, fresh.test_loss)
    assert resumed.epochs_done == 4
    assert sorted(p.name for p in ck.iterdir() if p.name.isdigit()) == ["3", "4"]  # epoch 3 rewritten
    again = _train(digits200, 4, ck)  # intact now: resumes at 4 without a warning
    np.testing.assert_array_equal(again.test_loss, fresh.test_loss)


def test_c03_every_epoch_damaged_is_still_refused_naming_the_latest(tmp_path, digits200):
    ck = tmp_path / "ck"
    _train(digits200, 2, ck)
    for step in ("1", "2"):
        _halve_largest_state_file(ck / step)
    with pytest.raises(checkpoints.CheckpointDamaged, match=r"\(epoch 2\): not a readable checkpoint"):
        _train(digits200, 3, ck)


# --- C05: a missing integrity record is a refusal ---------------------------------------------


def test_c05_a_missing_sha256_record_is_refused_not_a_pass(tmp_path):
    template = {"w": jnp.zeros(3)}
    checkpoints.save(tmp_path / "a", {"w": jnp.ones(3)}, 1)
    checkpoints.save(tmp_path / "b", {"w": jnp.full(3, 2.0)}, 1)
    (tmp_path / "a" / "1" / "state").rename(tmp_path / "stash")
    (tmp_path / "b" / "1" / "state").rename(tmp_path / "a" / "1" / "state")  # the other run's weights
    (tmp_path / "a" / "1" / "sha256.json").unlink()
    with pytest.raises(checkpoints.CheckpointDamaged, match=r"\(epoch 1\): not a readable.*sha256.json is missing"):
        checkpoints.load(tmp_path / "a", template)


def test_c05_a_missing_record_on_the_latest_epoch_falls_back_to_the_previous(tmp_path):
    template = {"w": jnp.zeros(3)}
    with checkpoints.Checkpoints(tmp_path / "ck", keep=2) as ck:
        ck.save({"w": jnp.ones(3)}, 1)
        ck.save({"w": jnp.full(3, 2.0)}, 2)
    (tmp_path / "ck" / "2" / "sha256.json").unlink()  # e.g. killed between the rename and the record
    with pytest.warns(RuntimeWarning, match="epoch 2 damaged .*sha256.json is missing.*resuming from epoch 1"):
        state, epoch, _ = checkpoints.load(tmp_path / "ck", template)
    assert epoch == 1 and float(state["w"][0]) == 1.0


# --- C10: one writer per checkpoint directory -------------------------------------------------

_HOLD = """
import sys, time
from jaxopt_lectures.lab import checkpoints
ck = checkpoints.Checkpoints(sys.argv[1])
ck.lock()
print("locked", flush=True)
time.sleep(60)
"""


def test_c10_a_second_writer_is_refused_naming_the_holder(tmp_path, digits200):
    ck = tmp_path / "ck"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(ck)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(checkpoints.CheckpointInUse, match=rf"ck/\.lock: .*held by pid {holder.pid}.*one writer"):
            _train(digits200, 2, ck)
        with pytest.raises(checkpoints.CheckpointInUse, match=f"pid {holder.pid}"):
            checkpoints.save(ck, {"w": jnp.ones(2)}, 1)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert not [p for p in ck.iterdir() if p.name != ".lock"]  # nothing written by the refused runs
    h = _train(digits200, 2, ck)  # the holder gone, the lock is free (flock ends with the process)
    assert h.epochs_done == 2
    _train(digits200, 2, ck)  # and released by a finished run in this process


def test_c10_a_refused_run_releases_nothing_it_did_not_hold_and_a_failed_run_releases_its_lock(tmp_path, digits200):
    ck = tmp_path / "ck"
    _train(digits200, 5, ck)
    with pytest.raises(ValueError, match="beyond epochs=3"):  # refused after taking the lock
        _train(digits200, 3, ck)
    with checkpoints.Checkpoints(ck) as c:  # free again in this very process
        c.lock()
