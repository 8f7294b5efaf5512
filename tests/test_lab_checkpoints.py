"""Checkpoints on Orbax: they know what they belong to (audit cases 96-106), damaged ones are
named, bfloat16 leaves, typed keys and sharded states round-trip, the last k epochs are kept."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
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


def steps(ck) -> list[str]:
    return sorted(p.name for p in Path(ck).iterdir() if p.name != ".lock")  # the writer's lock stays (v2 C10)


def test_case_100_a_checkpoint_of_other_settings_is_refused_naming_the_difference(ds, tmp_path):
    ck = tmp_path / "ck"
    run(ds, 0, 0.1, 2, ck)
    with pytest.raises(checkpoints.CheckpointMismatch, match=r"seeds: checkpoint \[0\], this run \[7\]") as e:
        run(ds, 7, 0.5, 3, ck)
    assert "optimizer_probe" in str(e.value) and "checkpoint_mode='fresh'" in str(e.value)
    with pytest.raises(checkpoints.CheckpointMismatch, match="optimizer_probe"):  # same seed, another η
        run(ds, 0, 0.5, 3, ck)
    fresh = run(ds, 7, 0.5, 3, ck, checkpoint_mode="fresh")
    alone = run(ds, 7, 0.5, 3, None)
    np.testing.assert_array_equal(fresh.train_loss, alone.train_loss)
    assert steps(ck) == ["2", "3"]  # the other run's epochs 1 and 2 were deleted, not mixed in
    resumed = run(ds, 7, 0.5, 4, ck)  # the fresh run's checkpoint now belongs to seed 7 / η 0.5
    np.testing.assert_array_equal(resumed.train_loss[..., :3], alone.train_loss)


def test_a_matching_checkpoint_resumes_to_the_same_numbers(ds, tmp_path):
    ck = tmp_path / "ck"
    run(ds, 0, 0.1, 2, ck)
    np.testing.assert_array_equal(run(ds, 0, 0.1, 3, ck).train_loss, run(ds, 0, 0.1, 3, None).train_loss)


def test_the_last_k_epochs_are_kept(ds, tmp_path):
    run(ds, 0, 0.1, 4, tmp_path / "two")
    assert steps(tmp_path / "two") == ["3", "4"]  # default checkpoint_keep=2
    run(ds, 0, 0.1, 4, tmp_path / "three", checkpoint_keep=3)
    assert steps(tmp_path / "three") == ["2", "3", "4"]
    for keep in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"keep={keep!r} is out of range; allowed: integers >= 1"):
            run(ds, 0, 0.1, 1, tmp_path / "bad", checkpoint_keep=keep)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
@pytest.mark.parametrize("part", ["state/d", "meta"])
def test_case_097_a_truncated_checkpoint_is_named(ds, tmp_path, keep, part):
    ck = tmp_path / "ck"
    run(ds, 0, 0.1, 1, ck)
    files = [p for p in (ck / "1" / part).iterdir() if p.is_file() and p.name != "commit_success.txt"]
    assert files
    for f in files:
        blob = f.read_bytes()
        f.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(ValueError, match=r"\(epoch 1\): not a readable checkpoint.*checkpoint_mode='fresh'") as e:
        run(ds, 0, 0.1, 2, ck)
    assert str(ck) in str(e.value) and any(f"{part}/{f.name} is damaged" in str(e.value) for f in files)


def test_case_102_a_plain_file_at_the_checkpoint_path_is_named(ds, tmp_path):
    ck = tmp_path / "ck.npz"  # e.g. a checkpoint of the former .npz format
    with open(ck, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="not a readable checkpoint .a file, not a checkpoint directory"):
        run(ds, 0, 0.1, 1, ck)
    assert ck.is_file()  # never deleted


def test_case_105_crafted_checkpoints_are_refused(tmp_path):
    state = {"w": jnp.ones(3, jnp.int32)}
    checkpoints.save(tmp_path / "a", {"w": jnp.full(3, 1.7)}, 1)
    with pytest.raises(ValueError, match=r"\['w'\] has dtype float32, expected int32"):
        checkpoints.load(tmp_path / "a", state)
    checkpoints.save(tmp_path / "s", {"w": jnp.ones(4, jnp.int32)}, 1)
    with pytest.raises(ValueError, match=r"\['w'\] has shape \(4,\), expected \(3,\)"):
        checkpoints.load(tmp_path / "s", state)
    with pytest.raises(ValueError, match=r"epoch=-2 is out of range; allowed: integers >= 0"):
        checkpoints.save(tmp_path / "b", state, -2)
    checkpoints.save(tmp_path / "b", state, 2)
    meta_file = tmp_path / "b" / "2" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())

    def craft(text):  # crafted by hand, its hashes recorded again (a missing record is refused: v2 C05)
        meta_file.write_text(text)
        checkpoints._write_hashes(tmp_path / "b" / "2")

    craft("{")
    with pytest.raises(ValueError, match=r"\(epoch 2\): not a readable checkpoint \(JSONDecodeError"):
        checkpoints.load(tmp_path / "b", state)
    craft(json.dumps({**meta, "epoch": 7}))
    with pytest.raises(ValueError, match=r"records epoch 7; allowed: its step number 2"):
        checkpoints.load(tmp_path / "b", state)
    craft(json.dumps({**meta, "format": "other/1"}))
    with pytest.raises(ValueError, match="not a readable checkpoint.*format 'other/1'"):
        checkpoints.load(tmp_path / "b", state)
    craft(json.dumps(meta))
    np.testing.assert_array_equal(checkpoints.load(tmp_path / "b", state)[0]["w"], state["w"])
    missing = [f for f in (tmp_path / "b" / "2" / "state").rglob("*") if f.is_file() and f.parent.name == "d"]
    for f in missing:  # the array data missing
        f.unlink()
    with pytest.raises(ValueError, match=r"not a readable checkpoint .ValueError: state/\S*d/[0-9a-f]+ is missing"):
        checkpoints.load(tmp_path / "b", state)


def test_case_106_save_never_writes_through_a_planted_link_and_leaves_no_temp(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious")
    (tmp_path / "ck").mkdir()
    os.symlink(victim, tmp_path / "ck" / "1.orbax-checkpoint-tmp")  # Orbax's temporary name for epoch 1
    with pytest.raises(OSError, match="symbolic link"):
        checkpoints.save(tmp_path / "ck", {"w": jnp.ones(2)}, 1)
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_text() == "precious"
    checkpoints.save(tmp_path / "other", {"w": jnp.ones(2)}, 1)
    assert steps(tmp_path / "other") == ["1"]  # renamed into place: no temporary directory left


def test_no_finished_epoch_is_not_a_checkpoint(tmp_path):
    (tmp_path / "ck" / "1.orbax-checkpoint-tmp").mkdir(parents=True)  # a save that crashed half-way
    with pytest.raises(FileNotFoundError, match="no finished checkpoint epoch"):
        checkpoints.load(tmp_path / "ck", {"w": jnp.ones(2)})


def test_bfloat16_leaves_round_trip(tmp_path):
    state = {"w": jnp.asarray([1.5, -2.0], jnp.bfloat16), "n": jnp.asarray(3, jnp.int32)}
    checkpoints.save(tmp_path / "ck", state, 4, fingerprint={"a": 1})
    back, epoch, _ = checkpoints.load(tmp_path / "ck", state, {"a": 1})
    assert epoch == 4 and back["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(back["w"], np.float32), [1.5, -2.0])


def test_typed_keys_round_trip(tmp_path):
    keys = jax.random.split(jax.random.key(3), 4)  # new-style typed keys, and a raw uint32 one
    state = {"keys": keys, "raw": jax.random.PRNGKey(5), "rbg": jax.random.key(1, impl="rbg")}
    checkpoints.save(tmp_path / "ck", state, 1)
    back, _, _ = checkpoints.load(tmp_path / "ck", state)
    assert jax.dtypes.issubdtype(back["keys"].dtype, jax.dtypes.prng_key)
    assert jax.random.key_impl(back["rbg"]) == jax.random.key_impl(state["rbg"])
    for name in ("keys", "rbg"):
        np.testing.assert_array_equal(jax.random.key_data(back[name]), jax.random.key_data(state[name]))
    np.testing.assert_array_equal(back["raw"], state["raw"])
    np.testing.assert_array_equal(jax.random.normal(back["keys"][2], (3,)), jax.random.normal(keys[2], (3,)))
    with pytest.raises(ValueError, match=r"\['raw'\] has dtype uint32, expected key<fry>"):
        checkpoints.load(tmp_path / "ck", {**state, "raw": jax.random.split(jax.random.key(5), 2)})


def test_restore_into_abstract_leaves(tmp_path):
    # the template may be jax.ShapeDtypeStruct leaves: nothing is materialized before the read
    state = {"w": jnp.arange(6.0).reshape(2, 3), "k": jax.random.key(0)}
    checkpoints.save(tmp_path / "ck", state, 1, {"loss": np.asarray([0.5, np.nan])})
    back, _, extra = checkpoints.load(tmp_path / "ck", jax.eval_shape(lambda: state))
    np.testing.assert_array_equal(back["w"], state["w"])
    np.testing.assert_array_equal(extra["loss"], [0.5, np.nan])
    assert isinstance(back["w"], jax.Array) and extra["loss"].dtype == np.float64


def test_a_zero1_sharded_state_round_trips_with_its_shardings_on_8_devices(tmp_path):
    script = Path(__file__).with_name("_checkpoint_sharded_check.py")
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        JAXOPT_LECTURES_CACHE=str(tmp_path / "cache"),
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ck")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-3:] == ["OK zero1 state", "OK trainer resume on mesh", "ALL OK"], proc.stdout


def test_a_state_without_arrays_round_trips(tmp_path):
    state = jol.sgd(0.1).init({"w": jnp.ones(3)})  # plain SGD keeps nothing
    assert not jax.tree.leaves(state)
    back, epoch, _ = checkpoints.load(checkpoints.save(tmp_path / "ck", state, 2), state)
    assert epoch == 2 and jax.tree.structure(back) == jax.tree.structure(state)
