"""The lab's cases of the reliability audit v2 (shared/reviews/reliability-v2.md): resumes
that cannot lie (C03, C05, C10), the lab's files (L05-L13), the kernel cache (L16, L17) and
worker processes (L03, L20), the compilation cache (L15), CLI numbers (L26, L29, L30), the footer
(L33) and the numeric mode (L34); each test named after its case."""

import contextlib
import errno
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from test_reliability_v2 import _train_mlp as _train  # the one-MLP run of the library-side cases

import jaxopt_lectures as jol
from jaxopt_lectures.lab import _files, checkpoints


def _halve_largest_state_file(step_dir):
    files = [f for f in (step_dir / "state").rglob("*") if f.is_file() and f.name != "commit_success.txt"]
    f = max(files, key=lambda f: f.stat().st_size)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


# --- C02: checkpoint settings checked before any work ---------------------------------------


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"epochs": 2, "checkpoint_every": 0}, r"checkpoint_every=0 is out of range; allowed: integers >= 1"),
        ({"epochs": 2, "checkpoint_every": 1.5}, r"checkpoint_every=1.5 is out of range"),
        ({"epochs": -1}, r"epochs=-1 is out of range; allowed: integers >= 0"),
    ],
)
def test_c02_checkpoint_every_and_epochs_are_checked_before_training(tmp_path, digits200, monkeypatch, kw, message):
    from jaxopt_lectures.lab import models, trainer

    monkeypatch.setattr(trainer, "_programs", lambda *a: pytest.fail("trained before the check"))
    mlp = functools.partial(models.MLP, (64, 16, 10))
    with pytest.raises(ValueError, match=message):
        trainer.train(mlp, digits200, jol.sgd(0.1), seeds=(0,), checkpoint=tmp_path / "ck", progress=False, **kw)
    assert not (tmp_path / "ck").exists()


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


# --- C06: the stored dtypes, not only what meta says ----------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "int32"])
def test_c06_a_meta_dtype_changed_after_saving_is_refused(tmp_path, dtype):
    checkpoints.save(tmp_path / "ck", {"w": jnp.full(16, 1.7), "n": {"b": jnp.ones(2)}}, 1)
    meta_file = tmp_path / "ck" / "1" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["layout"] = [[n, s, dtype if n == "['w']" else d] for n, s, d in meta["layout"]]
    meta_file.write_text(json.dumps(meta))
    checkpoints._write_hashes(tmp_path / "ck" / "1")  # the hashes recomputed: only the dtypes can tell
    template = {"w": jnp.zeros(16, dtype), "n": {"b": jnp.zeros(2)}}
    with pytest.raises(ValueError, match=rf"\['w'\] is stored as float32, but .* say {dtype}"):
        checkpoints.load(tmp_path / "ck", template)


# --- C09: a disk that fills during a save ---------------------------------------------------


def test_c09_a_failed_save_names_the_checkpoint_and_the_earlier_epoch_resumes(tmp_path, monkeypatch):
    template = {"w": jnp.zeros(3)}
    with checkpoints.Checkpoints(tmp_path / "ck", keep=2) as ck:
        ck.save({"w": jnp.ones(3)}, 1)

        def full(step_dir):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(checkpoints, "_write_hashes", full)
        with pytest.raises(OSError, match=r"ck \(epoch 2\): could not save the checkpoint \(No space left on device"):
            ck.save({"w": jnp.full(3, 2.0)}, 2)
    monkeypatch.undo()
    with pytest.warns(RuntimeWarning, match="epoch 2 damaged .*sha256.json is missing.*resuming from epoch 1"):
        state, epoch, _ = checkpoints.load(tmp_path / "ck", template)
    assert epoch == 1 and float(state["w"][0]) == 1.0


# --- C10: one writer per checkpoint directory -------------------------------------------------

_HOLD = """
import sys, time
from jaxopt_lectures.lab import _files, checkpoints
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


# --- the lab's files: one module, non-regular files refused without blocking -----------------


def _within(seconds, fn, *args, **kw):
    """``fn(*args, **kw)``, failing (not hanging) if it takes longer than ``seconds``."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} blocked for over {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _fake_run(calls):
    from _arms import arm, point

    from jaxopt_lectures.lab import verdict

    def fake(entry, seeds, quick, progress):
        calls.append(entry.name)
        n = len(seeds)
        base = arm([point(0.1, [8] * n, [1.0] * n, [1.5] * n)])
        var = arm([point(0.1, [4] * n, [0.5] * n, [1.5] * n)])
        return verdict.judge(entry, base, var, seeds)

    return fake


def _table(out, calls, logs):
    from jaxopt_lectures.lab import recipe, report

    return report.run_table(
        recipe.select(["adam"]), [0, 1], True, out, progress=False, run_entry=_fake_run(calls), log=logs.append
    )


def test_l08_a_fifo_at_a_row_file_is_refused_without_blocking_and_the_row_redone(tmp_path):
    (tmp_path / "rows").mkdir()
    os.mkfifo(tmp_path / "rows" / "adam.json")
    calls, logs = [], []
    table = _within(60, _table, tmp_path, calls, logs)
    assert calls == ["adam"] and table["rows"][0]["name"] == "adam"
    assert [line for line in logs if "a FIFO, not a regular file" in line and "rows/adam.json" in line]
    assert json.loads((tmp_path / "rows" / "adam.json").read_text())["name"] == "adam"  # replaced by the row


def test_l08_read_bytes_refuses_fifos_devices_folders_and_links_naming_the_path(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for name, kind in [("fifo", "a FIFO"), ("dir", "a folder"), ("link", "a symbolic link")]:
        with pytest.raises(_files.NotARegularFile, match=rf"^{tmp_path / name}: {kind}, not a regular file"):
            _within(10, _files.read_bytes, tmp_path / name, follow=False)
    with pytest.raises(_files.NotARegularFile, match="/dev/null: a character device"):
        _within(10, _files.read_bytes, "/dev/null")
    assert _files.read_bytes(tmp_path / "link") == b"x"  # followed where asked (user data)


def test_l09_a_fifo_or_a_partial_arm_file_is_retrained_without_blocking(tmp_path, capsys):
    from jaxopt_lectures.lab import run

    spec = types.SimpleNamespace(fingerprint="f" * 16)
    os.mkfifo(tmp_path / "fifo.json")
    assert _within(10, run._cache_read, tmp_path / "fifo.json", spec, "g") is None
    assert f"{tmp_path / 'fifo.json'}: a FIFO, not a regular file" in capsys.readouterr().err
    # L12: the right fingerprint and program, other keys missing: retrained, not a KeyError later
    (tmp_path / "partial.json").write_text(json.dumps({"fingerprint": spec.fingerprint, "program": "g"}))
    assert run._cache_read(tmp_path / "partial.json", spec, "g") is None
    whole = {"fingerprint": spec.fingerprint, "program": "g", **{k: [] for k in run.ARM_KEYS}}
    (tmp_path / "whole.json").write_text(json.dumps(whole))
    assert run._cache_read(tmp_path / "whole.json", spec, "g") == whole


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS", "EACCES"])
def test_l05_l06_a_failed_row_write_keeps_the_trained_row_and_says_so_in_one_line(tmp_path, monkeypatch, errno_name):
    code = getattr(errno, errno_name)

    def full(path, write, **kw):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_files, "atomic_write", full)
    calls, logs = [], []
    table = _table(tmp_path, calls, logs)
    assert calls == ["adam"] and table["rows"][0]["name"] == "adam"  # the finished row is in the table
    warned = [line for line in logs if line.startswith("warning: could not write")]
    assert warned == [
        f"warning: could not write {tmp_path / 'rows' / 'adam.json'} ({os.strerror(code)}); "
        "the row is kept in memory only"
    ]


def test_l05_reports_that_cannot_be_written_still_print_the_table(tmp_path, monkeypatch, capsys):
    from jaxopt_lectures import cli
    from jaxopt_lectures.lab import report

    calls = []
    real = report.run_table
    monkeypatch.setattr(report, "run_table", lambda *a, **kw: real(*a, **{**kw, "run_entry": _fake_run(calls)}))

    def full(table, out):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "recipe.png"))

    monkeypatch.setattr(report, "write_reports", full)
    assert cli.main(["recipe", "--quick", "--only", "adam", "--seeds", "2", "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "Adam (vs SGD)" in out and "Rule:" in out  # the table
    assert err.strip().splitlines()[-1].startswith("jaxopt-lectures recipe: error: could not write the reports in")
    assert "No space left on device" in err and "Traceback" not in err


# --- locks that say who holds them ------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from jaxopt_lectures.lab import _files
with _files.locked(sys.argv[1], timeout=0):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held(tmp_path):
    """A lock file held by another process (its pid written in it)."""
    path = tmp_path / "arms" / "program-g.lock"
    path.parent.mkdir()
    p = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        yield path, p
    finally:
        p.send_signal(signal.SIGCONT)
        p.kill()
        p.wait()
        p.stdout.close()


def test_l13_a_lock_held_by_a_stopped_run_is_named_and_not_waited_on(held, monkeypatch, capsys):
    from jaxopt_lectures.lab import run

    path, p = held
    p.send_signal(signal.SIGSTOP)
    monkeypatch.setenv(run.LOCK_TIMEOUT_ENV, "600")
    t0 = time.monotonic()
    with run._program_lock(path.parent, "g"):
        pass
    assert time.monotonic() - t0 < 10
    err = capsys.readouterr().err
    assert f"{path}: program lock held by pid {p.pid}, stopped (stopped: resume it with fg" in err
    assert "training the program here without it" in err


def test_l13_a_lock_held_past_the_timeout_is_given_up_with_a_message(held, monkeypatch, capsys):
    from jaxopt_lectures.lab import run

    path, p = held
    monkeypatch.setenv(run.LOCK_TIMEOUT_ENV, "0.5")
    with run._program_lock(path.parent, "g"):
        pass
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"waiting for {path}: program lock held by pid {p.pid} (at most 0.5 s)",
        f"warning: {path}: program lock held by pid {p.pid} for over 0.5 s; training the program here without it",
    ]
    with pytest.raises(_files.LockTimeout, match=f"held by pid {p.pid}"):
        with _files.locked(path, timeout=0):
            pass


def test_l07_l10_an_unusable_arm_lock_is_skipped_with_one_line(tmp_path, capsys):
    from jaxopt_lectures.lab import run

    arms = tmp_path / "arms"
    arms.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (arms / "program-g.lock").symlink_to(victim)  # L10: a planted link
    with run._program_lock(arms, "g"):
        pass
    assert victim.read_text() == "precious"
    assert "program-g.lock: a symbolic link, not a regular file" in capsys.readouterr().err
    (tmp_path / "file").write_text("")  # L07: the arms folder cannot be made (as read-only would)
    with run._program_lock(tmp_path / "file" / "arms", "g"):
        pass
    assert "training the program here without it" in capsys.readouterr().err


# --- L16, L17: the kernel cache -----------------------------------------------------------

_STEP = """
import warnings, jax.numpy as jnp, jaxopt_lectures as jol
from jaxopt_lectures import _kernels
warnings.simplefilter("always")
o = jol.fused_adam(0.1)
w = jol.jit_step(o)(o.init({"w": jnp.ones(4)}), {"w": jnp.ones(4)}).params.unpack()["w"][0]
print(float(w), _kernels.available())
"""


def _step(cache):
    env = {**os.environ, "JAXOPT_LECTURES_CACHE": str(cache), "JAXOPT_LECTURES_KERNELS": "1"}
    return subprocess.run([sys.executable, "-c", _STEP], env=env, capture_output=True, text=True, timeout=300)


def test_l17_l16_a_damaged_kernel_library_is_moved_aside_and_rebuilt_once(tmp_path):
    from jaxopt_lectures import _kernels

    if _kernels.compiler() is None:
        pytest.skip("no C++ compiler")
    cache = tmp_path / "cache"
    first = _step(cache)
    assert first.returncode == 0 and first.stdout.split()[1] == "True", first.stderr
    (so,) = cache.glob("fused_step-*.so")
    blob = so.read_bytes()
    so.write_bytes(blob[:80_000])  # L17: truncated, SIGBUS in dlopen before
    truncated = _step(cache)
    assert truncated.returncode == 0, truncated.stderr
    assert truncated.stdout == first.stdout  # the kernel again, same numbers
    assert f"the cached kernel library {so} was not usable (DamagedLibraryError" in truncated.stderr
    assert "/proc/self/fd" not in truncated.stderr
    assert len(list(cache.glob(so.name + ".damaged-*"))) == 1
    again = _step(cache)  # rebuilt once: no warning any more
    assert again.returncode == 0 and "not usable" not in again.stderr and again.stdout == first.stdout
    so.unlink()
    so.mkdir()  # L16: a folder at the name
    folder = _step(cache)
    assert folder.returncode == 0 and folder.stdout == first.stdout
    assert f"{so} was not usable (UnsafeCacheError: kernel library {so} is not a regular file" in folder.stderr


# --- L22, L23: the cache folder's name ------------------------------------------------------


def test_l22_a_tilde_is_expanded_and_a_relative_xdg_cache_home_ignored(monkeypatch, tmp_path):
    from jaxopt_lectures import _kernels

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", "~/jl-cache")
    assert _kernels.cache_dir() == tmp_path / "jl-cache"
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", " ")
    monkeypatch.setenv("XDG_CACHE_HOME", "xdgrel")
    assert _kernels.cache_dir() == tmp_path / ".cache" / "jaxopt_lectures"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _kernels.cache_dir() == tmp_path / "xdg" / "jaxopt_lectures"


def test_l23_a_non_utf8_cache_folder_turns_the_compilation_cache_off_with_a_warning(monkeypatch, tmp_path):
    from jaxopt_lectures.lab import _paths

    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path) + "/cache\udcff")  # the byte 0xff, as os.environ has it
    calls = {}
    monkeypatch.setattr(_paths.jax.config, "update", lambda k, v: calls.__setitem__(k, v))
    with pytest.warns(RuntimeWarning, match="not a UTF-8 name"):
        assert _paths.enable_compilation_cache() is None
    assert not calls


def test_item3_a_fifo_at_a_figure_path_is_replaced_without_blocking(tmp_path):
    from jaxopt_lectures.lab import figures

    plt = figures._pyplot()
    os.mkfifo(tmp_path / "f.png")
    fig = plt.figure()
    _within(30, figures._save, fig, tmp_path / "f.png")
    assert _files.read_bytes(tmp_path / "f.png", follow=False).startswith(b"\x89PNG")


# --- L03, L20: processes --------------------------------------------------------------------


def test_l03_a_worker_whose_parent_is_already_gone_exits_at_once():
    code = "from jaxopt_lectures.lab import report; report._worker_init(1); print('alive')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "alive" not in out.stdout


_POOL = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from jaxopt_lectures.lab import report
pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=report._worker_init,
                           initargs=(os.getpid(),))
futures = [pool.submit(time.sleep, 60) for _ in range(2)]
print(" ".join(str(p) for p in pool._processes), flush=True)
time.sleep(60)
"""


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_l03_workers_killed_with_their_parent_while_still_importing_do_not_live_on():
    parent = subprocess.Popen([sys.executable, "-c", _POOL], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2
        parent.kill()  # the workers are still importing jax and the lab
        parent.wait()
        deadline = time.monotonic() + 60
        while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_gone(w) for w in workers), [w for w in workers if not _gone(w)]
    finally:
        parent.kill()
        parent.stdout.close()
        for w in workers if "workers" in dir() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)


@pytest.mark.parametrize("platform", ["nonsense", "cuda"])
def test_l20_a_bad_jax_platforms_ends_with_one_line(platform, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": platform}
    out = subprocess.run(
        [sys.executable, "-m", "jaxopt_lectures.cli", "schedules", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("jaxopt-lectures schedules: error: JAX could not start a backend")
    assert f"JAX_PLATFORMS={platform!r}" in line


def test_l20_a_closed_stdout_ends_with_one_line():
    p = subprocess.Popen(
        [sys.executable, "-m", "jaxopt_lectures.cli", "recipe", "--list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p.stdout.close()  # the reader is gone before anything is written (as `| head -0`)
    err = p.stderr.read()
    p.stderr.close()
    assert p.wait(timeout=120) == 1
    assert err.strip() == "jaxopt-lectures recipe: stdout was closed; finished rows are saved"


# --- the class: random non-regular files at every lab path ------------------------------------


def _plant_obstacle(path, kind, scratch):
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "link to a fifo":
        os.mkfifo(scratch / f"fifo-{path.name}")
        path.symlink_to(scratch / f"fifo-{path.name}")
    elif kind == "link to /dev/zero":  # endless if read
        path.symlink_to("/dev/zero")
    elif kind == "dangling link":
        path.symlink_to(scratch / "nowhere")


_KINDS = ["fifo", "folder", "link to a fifo", "link to /dev/zero", "dangling link"]
_WHERE = ["row", "rows folder", "arm", "program lock", "checkpoint lock", "data cache"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.lists(st.sampled_from(_WHERE), min_size=1, max_size=3, unique=True), kind=st.sampled_from(_KINDS))
def test_property_non_regular_files_at_lab_paths_never_hang_or_lose_a_finished_row(where, kind, capsys):
    import tempfile

    from jaxopt_lectures.lab import data, run

    with tempfile.TemporaryDirectory() as d:
        out, scratch = Path(d) / "out", Path(d)
        paths = {
            "row": out / "rows" / "adam.json",
            "rows folder": out / "rows",
            "arm": out / "arms" / f"{'f' * 16}.json",
            "program lock": out / "arms" / "program-g.lock",
            "checkpoint lock": out / "ck" / ".lock",
            "data cache": out / "cache" / "mnist1d_20_42.npz",
        }
        for w in where:
            if not (w == "row" and "rows folder" in where):
                _plant_obstacle(paths[w], kind, scratch)
        calls, logs = [], []
        table = _within(60, _table, out, calls, logs)  # a row planted over is redone, never lost
        assert calls == ["adam"] and [r["name"] for r in table["rows"]] == ["adam"]
        if "rows folder" in where and kind != "folder":  # no folder for rows: kept, said in one line
            assert [line for line in logs if line.startswith(f"warning: could not write {paths['row']}")]
        else:
            saved = _files.read_bytes(paths["row"], follow=False)  # and on disk, a regular file now
            assert json.loads(saved)["name"] == "adam"
        spec = types.SimpleNamespace(fingerprint="f" * 16)
        assert _within(10, run._cache_read, paths["arm"], spec, "g") is None

        def lock():
            with run._program_lock(paths["program lock"].parent, "g"):
                return True

        assert _within(10, lock)
        if "checkpoint lock" in where:  # refused with the path named, never waited on
            with pytest.raises(OSError, match=r"\.lock: .*not a regular file"):
                _within(10, checkpoints.Checkpoints(out / "ck").lock)
        else:
            with checkpoints.Checkpoints(out / "ck") as ck:
                _within(10, ck.lock)
        if "data cache" in where and kind in ("fifo", "link to a fifo", "link to /dev/zero"):
            with pytest.raises((OSError, data.DataError), match="not a regular file"):
                with _within(10, data._open_npz, paths["data cache"]):
                    pass
    capsys.readouterr()


# --- L15: compilation-cache entries under the wrong keys --------------------------------------


def _double_plus_one(v):
    return v * 2.0 + 1.0


def _shift_and_sum(v):
    return v - 3.0, v.sum()


def test_l15_rotated_compilation_cache_entries_are_set_aside_and_the_command_run_once_more(
    tmp_path, monkeypatch, capsys
):
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from jaxopt_lectures import cli, figures_cli
    from jaxopt_lectures.lab import _paths

    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_paths, "_enabled", None)
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {k: getattr(jax.config, k) for k in keys}
    x = np.arange(3.0, dtype=np.float32)
    got = []

    def command(args):  # a command with two small programs, one output and two
        _paths.enable_compilation_cache(min_compile_secs=0.0)
        got.append((np.asarray(jax.jit(_double_plus_one)(x)), np.asarray(jax.jit(_shift_and_sum)(x)[0])))
        return 0

    monkeypatch.setattr(figures_cli, "_run_schedules", command)
    compilation_cache.reset_cache()
    jax.clear_caches()
    folder = tmp_path / "cache" / "jax"
    try:
        assert cli.main(["schedules"]) == 0  # fills the cache
        entries = sorted(folder.glob("*-cache"))
        assert len(entries) == 2, entries
        contents = [e.read_bytes() for e in entries]
        for e, c in zip(entries, contents[1:] + contents[:1]):  # valid executables under each other's keys
            e.write_bytes(c)
        jax.clear_caches()  # as in a new process: programs come from the cache
        assert cli.main(["schedules"]) == 0
    finally:
        for k, v in saved.items():
            jax.config.update(k, v)
        compilation_cache.reset_cache()
        jax.clear_caches()
    err = capsys.readouterr().err
    [aside] = folder.parent.glob("jax.set-aside-*")
    assert err.count("\n") == 1 and err.startswith("jaxopt-lectures schedules: warning: failed (")
    assert f"compilation cache {folder}," in err and f"moved it to {aside}" in err and "once more" in err
    assert sorted(p.name for p in aside.iterdir()) == [e.name for e in entries]  # kept for a look
    assert sorted(folder.glob("*-cache")) == entries  # compiled again, under the right keys
    np.testing.assert_array_equal(got[-1][0], [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(got[-1][1], [-3.0, -2.0, -1.0])


def test_l15_a_failure_without_the_lab_cache_is_not_retried(tmp_path, monkeypatch):
    from jaxopt_lectures import cli, figures_cli
    from jaxopt_lectures.lab import _paths

    monkeypatch.setattr(_paths, "_enabled", None)
    calls = []

    def command(args):
        calls.append(1)
        raise ValueError("a bug")

    monkeypatch.setattr(figures_cli, "_run_schedules", command)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["schedules"])
    assert calls == [1]


# --- L26, L29, L30: every CLI number has a range, shown in --help, checked before any work ---


def _numeric_options():
    """(command, option, bounds) for every option of every subcommand that argparse reads as a number."""
    import argparse

    from jaxopt_lectures import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, parser in sub.choices.items():
        bounds = parser.get_default("_number_bounds") or {}
        for action in parser._actions:
            if action.type in (int, float):
                yield command, parser, action, bounds.get(action.dest)


def test_l30_every_numeric_cli_option_has_a_range_shown_in_its_help():
    seen = list(_numeric_options())
    assert {c for c, *_ in seen} >= {"recipe", "paths", "landscape", "gradients", "batch-size", "schedules"}
    for command, parser, action, bounds in seen:
        assert bounds is not None, f"{command} {action.option_strings}: no range"
        assert bounds[1].describe() in " ".join(parser.format_help().split()), (command, action.dest)
        assert action.default in bounds[1], (command, action.dest)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["paths", "--steps", "50000000"], "--steps 50000000 is out of range; allowed: integers in [1, 1000000]"),
        (
            ["schedules", "--steps", "2000000000"],
            "--steps 2000000000 is out of range; allowed: integers in [10, 1000000]",
        ),
        (["paths", "--seed", "4294967296"], "--seed 4294967296 is out of range; allowed: integers in [0, 4294967295]"),
        (["gradients", "--depths", "5,1000"], "--depths 1000 is out of range; allowed: integers in [1, 100]"),
        (["gradients", "--epochs", "20000"], "--epochs 20000 is out of range; allowed: integers in [0, 10000]"),
        (["batch-size", "--updates", "10000000"], "--updates 10000000 is out of range"),
        (["batch-size", "--seeds", "1001"], "--seeds 1001 is out of range; allowed: integers in [1, 1000]"),
        (
            ["batch-size", "--seed", "4294967295"],
            "--seed 4294967295 is out of range; allowed: integers in [0, 4294967293] "
            "(with --seeds 3 the last seed is 4294967297)",
        ),
        (["optimizers-conditioning", "--scale-seed", "-1"], "--scale-seed -1 is out of range"),
        (["optimizers-conditioning", "--epochs", "1000000"], "--epochs 1000000 is out of range"),
        (["recipe", "--jobs", "100"], "--jobs 100 is out of range; allowed: integers in [1, 64]"),
    ],
)
def test_l30_cli_numbers_past_their_range_are_refused_on_one_line_before_any_work(argv, message, tmp_path, capsys):
    from jaxopt_lectures import cli

    out = tmp_path / "out"
    assert cli.main([*argv, "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"jaxopt-lectures {argv[0]}: error: {message}")
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(
    "seeds, message",
    [
        ("4294967296", "--seeds 4294967296 is out of range; allowed: integers in [1, 1000]"),
        ("1001", "--seeds 1001 is out of range; allowed: integers in [1, 1000]"),
        (
            "0,4294967295",
            "--seeds 4294967295 is out of range; allowed: integers in [0, 4294947295] (a seed of the list)",
        ),
        ("0,-1", "--seeds -1 is out of range; allowed: integers in [0, 4294947295] (a seed of the list)"),
        (",".join(map(str, range(1001))), "--seeds lists 1001 seeds; allowed: at most 1000"),
    ],
)
def test_l26_recipe_seed_counts_and_seeds_past_their_range_are_refused_before_any_work(seeds, message, capsys):
    from jaxopt_lectures import cli

    assert cli.main(["recipe", "--seeds", seeds, "--explain", "adam"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == f"jaxopt-lectures recipe: error: {message}\n"
    help_text = " ".join(_help("recipe").split())
    assert "N integers in [1, 1000]" in help_text and "integers in [0, 4294947295]" in help_text


def _help(command):
    return {c: p for c, p, *_ in _numeric_options()}[command].format_help()


def test_l26_the_largest_recipe_seed_keeps_its_extra_seed_blocks_below_2_to_the_32():
    from jaxopt_lectures import cli
    from jaxopt_lectures.lab import run, stats

    top = int(cli.RECIPE_SEED.high)
    for stage in range(1, stats.SEED_SCHEDULE[-1]):  # a block per stage while 1 seed grows to the cap
        assert run.extension_seeds([top], stage)[0] <= 2**32 - 1
    assert cli.parse_seeds(f"0,{top}", quick=True) == [0, top]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--span", "1e300"),
        ("--span", "1000.5"),
        ("--depth", "116"),
        ("--width", "257"),
        ("--epochs", "10001"),
        ("--resolution", "102"),
    ],
)
def test_l29_landscape_numbers_past_their_range_are_refused_before_training(
    option, value, tmp_path, monkeypatch, capsys
):
    from jaxopt_lectures import cli
    from jaxopt_lectures.lab import figures

    monkeypatch.setattr(figures, "landscape_study", lambda **kw: pytest.fail("trained"))
    argv = ["landscape", "--depth", "8", "--width", "1", "--epochs", "1", "--resolution", "3", "--span", "1"]
    argv[argv.index(option) + 1] = value
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(
        f"jaxopt-lectures landscape: error: {option} {float(value) if option == '--span' else value} is out of range; allowed: "
    )
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_l29_a_landscape_with_overflowed_losses_is_still_drawn(tmp_path):
    from jaxopt_lectures.lab import figures

    alphas = np.linspace(-1000.0, 1000.0, 3)
    surface = np.array([[np.inf, 3e25, np.nan], [4.0, 2.2, 9.0], [1e30, np.inf, 7.0]])
    ls = figures.Landscape(alphas, np.array([np.inf, 2.2, 1e26]), surface, 2.2, label="overflowed", depth=8)
    flat = figures.Landscape(alphas, np.full(3, 2.3), np.full((3, 3), 2.3), 2.3, label="flat", depth=8)
    for result in ({"a": ls}, {"a": flat}, {"a": ls, "b": flat}):
        [png] = figures.plot_landscapes(result, tmp_path)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- L33: the footer names the workers used --------------------------------------------------


def test_l33_one_pending_row_runs_here_and_the_footer_says_no_worker_was_used(tmp_path):
    from jaxopt_lectures.lab import recipe, report

    calls, logs = [], []
    table = report.run_table(
        recipe.select(["adam"]), [0, 1], True, tmp_path, False, _fake_run(calls), logs.append, jobs=4
    )
    assert calls == ["adam"] and table["jobs"] == 1
    footer = report.terminal(table)
    assert "in this process (no worker processes)" in footer and "worker processes," not in footer
    assert "summed over workers" not in footer
    table["jobs"] = 2  # as two workers would have written it
    assert "summed over 2 worker processes" in report.terminal(table)


# --- L34: the numeric mode is part of a row's and an arm's fingerprint --------------------------


def test_l34_rows_made_with_x64_are_not_reused_by_a_float32_rerun(tmp_path):
    import jax

    from jaxopt_lectures.lab import recipe, run

    calls, logs = [], []
    entry = recipe.select(["adam"])[0]
    with jax.enable_x64(True):
        x64 = recipe.row_fingerprint(entry, [0, 1], True)
        arm64 = run.arm_fingerprint({"a": 1}, {}, 3, [0], "loss")
        _table(tmp_path, calls, logs)
        _table(tmp_path, calls, logs)  # the same mode: reused
    assert calls == ["adam"] and any("finished earlier, reusing" in line for line in logs)
    assert recipe.row_fingerprint(entry, [0, 1], True) != x64
    assert run.arm_fingerprint({"a": 1}, {}, 3, [0], "loss") != arm64
    assert run.numeric_mode() == []  # float32 fingerprints are those of before
    _table(tmp_path, calls, logs)
    assert calls == ["adam", "adam"]  # trained again, not "finished earlier"
