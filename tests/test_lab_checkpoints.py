"""Checkpoints know what they belong to, and damaged ones are named (audit cases 96-106)."""

import functools
import os

import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jol
from jaxopt_lectures.lab import checkpoints, data, models, trainer

MLP = functools.partial(models.MLP, (64, 16, 10))


@pytest.fixture(scope="module")
def ds():
    return data.load_digits(train_size=200)


def run(ds, seed, lr, epochs, ck, **kw):
    return trainer.train(MLP, ds, jol.sgd(lr), epochs=epochs, seeds=(seed,), checkpoint=ck, progress=False, **kw)


def test_case_100_a_checkpoint_of_other_settings_is_refused_naming_the_difference(ds, tmp_path):
    ck = tmp_path / "ck.npz"
    run(ds, 0, 0.1, 2, ck)
    with pytest.raises(checkpoints.CheckpointMismatch, match=r"seeds: checkpoint \[0\], this run \[7\]") as e:
        run(ds, 7, 0.5, 3, ck)
    assert "optimizer_probe" in str(e.value) and "checkpoint_mode='fresh'" in str(e.value)
    with pytest.raises(checkpoints.CheckpointMismatch, match="optimizer_probe"):  # same seed, another η
        run(ds, 0, 0.5, 3, ck)
    fresh = run(ds, 7, 0.5, 3, ck, checkpoint_mode="fresh")
    alone = run(ds, 7, 0.5, 3, None)
    np.testing.assert_array_equal(fresh.train_loss, alone.train_loss)
    resumed = run(ds, 7, 0.5, 4, ck)  # the fresh run's checkpoint now belongs to seed 7 / η 0.5
    np.testing.assert_array_equal(resumed.train_loss[..., :3], alone.train_loss)


def test_a_matching_checkpoint_resumes_to_the_same_numbers(ds, tmp_path):
    ck = tmp_path / "ck.npz"
    run(ds, 0, 0.1, 2, ck)
    np.testing.assert_array_equal(run(ds, 0, 0.1, 3, ck).train_loss, run(ds, 0, 0.1, 3, None).train_loss)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_case_097_a_truncated_checkpoint_is_named(ds, tmp_path, keep):
    ck = tmp_path / "ck.npz"
    run(ds, 0, 0.1, 1, ck)
    blob = ck.read_bytes()
    ck.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(ValueError, match="not a readable checkpoint.*checkpoint_mode='fresh'") as e:
        run(ds, 0, 0.1, 2, ck)
    assert str(ck) in str(e.value)


def test_case_102_a_plain_npy_is_named(ds, tmp_path):
    ck = tmp_path / "ck.npz"
    with open(ck, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        run(ds, 0, 0.1, 1, ck)


def test_case_105_crafted_checkpoints_are_refused(tmp_path):
    state = {"w": jnp.ones(3, jnp.int32)}
    ck = checkpoints.save(tmp_path / "a.npz", {"w": jnp.full(3, 1.7)}, 1)
    with pytest.raises(ValueError, match="dtype float32, expected int32"):
        checkpoints.load(ck, state)
    ck = checkpoints.save(tmp_path / "b.npz", state, -2)
    with pytest.raises(ValueError, match="epoch -2 is out of range"):
        checkpoints.load(ck, state)
    with np.load(ck) as f:
        arrays = {k: f[k] for k in f.files if k != "leaf_0"}
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoints.load(tmp_path / "c.npz", state)


def test_case_106_save_never_writes_through_a_planted_link_and_leaves_no_temp(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / f".ck.npz.{os.getpid()}.tmp")  # the old, predictable temp name
    checkpoints.save(tmp_path / "ck.npz", {"w": jnp.ones(2)}, 1)
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".ck.npz.{os.getpid()}.tmp", "ck.npz", "victim.txt"]


def test_bfloat16_leaves_round_trip(tmp_path):
    state = {"w": jnp.asarray([1.5, -2.0], jnp.bfloat16), "n": jnp.asarray(3, jnp.int32)}
    back, epoch, _ = checkpoints.load(checkpoints.save(tmp_path / "ck.npz", state, 4, fingerprint={"a": 1}), state,
                                      {"a": 1})
    assert epoch == 4 and back["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(back["w"], np.float32), [1.5, -2.0])
