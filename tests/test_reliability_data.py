"""Reliability and security of the data loaders and caches (issue 13, audit cases 74-136).

Each ``test_case_NNN_*`` reproduces case NNN of ``../shared/reviews/reliability.md``: it failed
on 75af9b4 and passes now.
"""

import os
import re
import shutil
import stat
import subprocess
import zipfile

import numpy as np
import pytest

from jaxopt_lectures import _kernels
from jaxopt_lectures.lab import _paths, data

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(_kernels.SWITCH_ENV, raising=False)
    monkeypatch.setattr(_kernels, "_cache_warned", set(), raising=False)
    monkeypatch.setattr(_kernels, "_state", {"tried": False, "lib": None, "reason": None})


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------- 136: the kernel cache


def test_case_136_cache_folders_are_created_private(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path / "a" / "cache"))
    calls = {}
    monkeypatch.setattr(_paths.jax.config, "update", lambda k, v: calls.__setitem__(k, v))
    target = _paths.enable_compilation_cache()
    assert target == tmp_path / "a" / "cache" / "jax"
    assert _mode(tmp_path / "a" / "cache") == 0o700 and _mode(target) == 0o700
    assert calls["jax_compilation_cache_dir"] == str(target)
    assert _paths.cache_dir() == tmp_path / "a" / "cache"


def test_case_136_world_writable_cache_folder_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.warns(RuntimeWarning, match=r"writable by group or others \(mode 0777\).*JAXOPT_LECTURES_CACHE"):
        assert _kernels.load() is None
    assert "cannot be used" in _kernels.unavailable_reason()
    # the same single warning covers the compilation cache and the data cache
    calls = {}
    monkeypatch.setattr(_paths.jax.config, "update", lambda k, v: calls.__setitem__(k, v))
    assert _paths.enable_compilation_cache() is None and not calls
    data.load_mnist1d(20)
    assert list(folder.iterdir()) == []
    with pytest.raises(_kernels.UnsafeCacheError):
        _paths.cache_dir()


def test_case_136_cache_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir(mode=0o700)
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 4242)
    with pytest.warns(RuntimeWarning, match=rf"owned by uid {me}, not by the current user"):
        assert _kernels.usable_cache_dir() is None
    with pytest.raises(_kernels.UnsafeCacheError, match="owned by uid"):
        _kernels.private_dir(tmp_path / "cache")


def _plant(target, marker, tmp_path):
    """A shared library whose constructor writes ``marker``: what an attacker would plant."""
    src = tmp_path / "planted.c"
    src.write_text(
        "#include <stdio.h>\n__attribute__((constructor)) static void ran(void) {\n"
        f'  FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }}\n}}\n'
    )
    subprocess.run(
        [_kernels.compiler(), "-shared", "-fPIC", str(src), "-o", str(target)],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def planted(tmp_path):
    if _kernels.compiler() is None:
        pytest.skip("no C++ compiler to build a planted library with")
    folder = _kernels.cache_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = _kernels.library_path(_kernels.compiler())
    assert target.parent == folder
    marker = tmp_path / "marker"
    _plant(target, marker, tmp_path)
    return target, marker


@pytest.fixture
def rebuilds(monkeypatch):
    """An unusable cached library is moved aside and rebuilt once (audit v2 L16); here the
    rebuild is a stub that fails, so the XLA path is taken and nothing real is loaded."""
    calls = []

    def build(cxx, target):
        calls.append(target)
        raise RuntimeError("rebuild stub")

    monkeypatch.setattr(_kernels, "build", build)
    return calls


def _warned(rec, pattern):
    messages = [str(w.message) for w in rec]
    assert any(re.search(pattern, m) for m in messages), messages
    assert any("XLA path (RuntimeError: rebuild stub)" in m for m in messages), messages


def _moved_aside(target, rebuilds):
    assert rebuilds == [target] and not os.path.lexists(target)
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(target.name + ".damaged-")]


def test_case_136_group_or_world_writable_library_is_not_loaded(planted, rebuilds):
    target, marker = planted
    target.chmod(0o666)
    with pytest.warns(RuntimeWarning) as rec:
        assert _kernels.load() is None
    _warned(rec, rf"{target} was not usable \(UnsafeCacheError: kernel library .* writable by group.*moved it to")
    assert not marker.exists()
    _moved_aside(target, rebuilds)


def test_case_136_library_of_another_user_is_not_loaded(planted, monkeypatch, rebuilds):
    target, marker = planted
    target.chmod(0o700)
    real_fstat, planted_ino = os.fstat, os.stat(target).st_ino

    def fstat(fd):
        s = real_fstat(fd)
        if stat.S_ISREG(s.st_mode) and s.st_ino == planted_ino:
            return os.stat_result((s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid + 4242, *tuple(s)[5:]))
        return s

    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.warns(RuntimeWarning) as rec:
        assert _kernels.load() is None
    _warned(rec, r"kernel library .* is owned by uid \d+, not by the current user")
    assert not marker.exists()
    _moved_aside(target, rebuilds)


def test_case_136_symlinked_library_is_not_loaded(planted, tmp_path, rebuilds):
    target, marker = planted
    elsewhere = tmp_path / "elsewhere.so"
    shutil.move(target, elsewhere)
    elsewhere.chmod(0o700)
    target.symlink_to(elsewhere)
    with pytest.warns(RuntimeWarning) as rec:
        assert _kernels.load() is None
    _warned(rec, "is a symbolic link; refusing")
    assert not marker.exists() and elsewhere.exists()  # the link moved aside, its target untouched
    _moved_aside(target, rebuilds)


def test_case_136_build_uses_an_unpredictable_temp_name_and_renames(tmp_path):
    seen = tmp_path / "seen"
    cxx = tmp_path / "fakecxx"
    cxx.write_text(
        '#!/bin/sh\nwhile [ $# -gt 1 ]; do if [ "$1" = -o ]; then '
        f'echo "$2" > {seen}; echo lib > "$2"; fi; shift; done\n'
    )
    cxx.chmod(0o700)
    folder = tmp_path / "kcache"
    target = folder / "fused_step-abc.so"
    _kernels.build(str(cxx), target)
    tmp_name = seen.read_text().strip()
    assert os.path.dirname(tmp_name) == str(folder)
    assert tmp_name != str(folder / f".{target.name}.{os.getpid()}.tmp")
    assert not tmp_name.endswith(f".{os.getpid()}.tmp") and not os.path.exists(tmp_name)
    assert _mode(folder) == 0o700 and _mode(target) == 0o700
    # with the SHA-256 recorded at build time, checked before every load (audit v2 L17)
    assert sorted(p.name for p in folder.iterdir()) == [target.name, target.name + ".sha256"]
    # a failed build leaves no temporary file behind
    cxx.write_text("#!/bin/sh\nexit 3\n")
    with pytest.raises(RuntimeError, match=r"failed \(3\)"):
        _kernels.build(str(cxx), folder / "other.so")
    assert sorted(p.name for p in folder.iterdir()) == [target.name, target.name + ".sha256"]


# ---------------------------------------------------------------- 74: unusable cache folder


@pytest.mark.parametrize("where", ["/dev/null/c", "file"])
def test_case_074_unusable_cache_folder_degrades_with_one_warning(where, tmp_path, monkeypatch):
    if where == "file":
        (tmp_path / "afile").write_text("x")
        where = str(tmp_path / "afile" / "c")
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", where)
    calls = {}
    monkeypatch.setattr(_paths.jax.config, "update", lambda k, v: calls.__setitem__(k, v))
    with pytest.warns(RuntimeWarning, match="JAXOPT_LECTURES_CACHE") as record:
        assert _paths.enable_compilation_cache() is None
        d = data.load_mnist1d(20)
        assert _kernels.load() is None
    assert len(record) == 1 and where in str(record[0].message)
    assert d.num_classes == 10 and not calls


def test_case_074_read_only_cache_parent(tmp_path, monkeypatch):
    if os.getuid() == 0:
        pytest.skip("root writes through read-only modes")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(ro / "cache"))
    try:
        with pytest.warns(RuntimeWarning, match="JAXOPT_LECTURES_CACHE"):
            assert data.load_mnist1d(20).num_classes == 10
    finally:
        ro.chmod(0o700)


# ---------------------------------------------------------------- 106, 124, 125: the mnist1d cache


def _cache_file(tmp_path, n=20):
    return tmp_path / "cache" / f"mnist1d_{n}_42.npz"


def test_case_106_cache_write_is_mkstemp_fsync_replace(tmp_path, monkeypatch):
    folder = tmp_path / "w"
    folder.mkdir()
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(str(a)), real_replace(a, b)))
    # a symlink planted at the old predictable temp name is never written through
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (folder / f".c.npz.{os.getpid()}.tmp").symlink_to(victim)
    data._atomic_savez(folder / "c.npz", x=np.arange(3))
    assert victim.read_text() == "keep"
    assert synced == [False, True]  # the file, then its folder
    assert len(replaced) == 1 and os.path.dirname(replaced[0]) == str(folder)
    assert not replaced[0].endswith(f".{os.getpid()}.tmp")
    np.testing.assert_array_equal(np.load(folder / "c.npz")["x"], np.arange(3))

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="No space"):
        data._atomic_savez(folder / "d.npz", x=np.arange(3))
    assert sorted(p.name for p in folder.iterdir()) == sorted(["c.npz", f".c.npz.{os.getpid()}.tmp"])


def _garbage(path):
    path.write_bytes(b"\x00garbage\xff" * 10)


def _truncated(path):
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])


def _empty(path):
    path.write_bytes(b"")


def _missing_x(path):
    with np.load(path) as f:
        y, digest = f["y"], f["sha256"]
    np.savez(path, y=y, sha256=digest)


def _shifted_labels(path):  # valid arrays, but not what was written (no checksum update)
    with np.load(path) as f:
        x, y, digest = f["x"], f["y"], f["sha256"]
    np.savez(path, x=x, y=(y + 1) % 10, sha256=digest)


def _flat_x(path):
    with np.load(path) as f:
        x, y = f["x"], f["y"]
    np.savez(path, x=x[:, 0], y=y, sha256=np.array(data._digest(x[:, 0], y)))


def _old_format(path):  # written by 75af9b4: no checksum
    with np.load(path) as f:
        x, y = f["x"], f["y"]
    np.savez(path, x=x, y=y)


@pytest.mark.parametrize("damage", [_empty, _truncated, _garbage, _missing_x])
def test_case_124_damaged_cache_file_is_named_deleted_and_regenerated(damage, tmp_path):
    good = data.load_mnist1d(20)
    path = _cache_file(tmp_path)
    damage(path)
    with pytest.warns(RuntimeWarning, match=rf"damaged mnist1d cache file {path}.*regenerating"):
        again = data.load_mnist1d(20)
    np.testing.assert_array_equal(good.x_train, again.x_train)
    np.testing.assert_array_equal(good.y_test, again.y_test)
    data.load_mnist1d(20)  # repaired: no warning (warnings are errors here)


@pytest.mark.parametrize(
    "damage, why", [(_shifted_labels, "checksum"), (_flat_x, r"x is float32\(20,\)"), (_old_format, "'sha256'")]
)
def test_case_125_wrong_cache_content_is_detected(damage, why, tmp_path):
    good = data.load_mnist1d(20)
    damage(_cache_file(tmp_path))
    with pytest.warns(RuntimeWarning, match=why):
        again = data.load_mnist1d(20)
    assert again.input_shape == (40, 1)
    np.testing.assert_array_equal(good.y_train, again.y_train)


def test_case_127_load_mnist1d_sizes_are_checked():
    for bad in (0, -5, 9, 2.5, "100", True):
        with pytest.raises(data.DataError, match="num_samples must be an integer >= 10"):
            data.load_mnist1d(bad)
    with pytest.raises(data.DataError, match="generator_seed"):
        data.load_mnist1d(20, generator_seed=-1)


# ---------------------------------------------------------------- 110: unreadable .npz


def test_case_110_unreadable_npz_is_a_data_error_naming_the_path(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("x,y\n1,2\n")
    with pytest.raises(data.DataError, match=r"text\.npz: not an \.npz archive"):
        data.load_npz(text)
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((20, 2)), y=np.arange(20) % 2)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(data.DataError, match=r"cut\.npz: not a readable \.npz archive \(BadZipFile"):
        data.load_npz(cut)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(data.DataError, match=r"single\.npz: holds a single array"):
        data.load_npz(npy)
    assert not isinstance(zipfile.BadZipFile(), ValueError)  # so the wrapping above is needed


# ---------------------------------------------------------------- 113-122: arrays


def test_case_113_zero_features_are_refused():
    with pytest.raises(data.DataError, match=r"shape \(100, 0\), i\.e\. no features"):
        data.from_arrays(np.zeros((100, 0)), np.arange(100) % 3)


def test_case_114_complex_x_is_refused():
    with pytest.raises(data.DataError, match="x is complex.*real and imaginary parts"):
        data.from_arrays(np.ones((20, 2)) * (1 + 1j), np.arange(20) % 2)


def test_case_116_absurd_inferred_num_classes_is_refused():
    y = np.arange(10) % 3
    y[0] = 10**9
    with pytest.raises(data.DataError, match=r"num_classes = max\(y\) \+ 1 = 1000000001 from 10 examples"):
        data.from_arrays(np.zeros((10, 2)), y)
    assert data.from_arrays(np.zeros((10, 2)), y % 3, num_classes=3).num_classes == 3
    for bad in (0, -2, 2.5, "3", True):
        with pytest.raises(data.DataError, match="num_classes must be an integer >= 1"):
            data.from_arrays(np.zeros((10, 2)), np.arange(10) % 2, num_classes=bad)


def test_case_118_integral_float_labels_ask_for_num_classes():
    y = np.array([0.0, 1.0, 2.0] * 4)
    with pytest.raises(data.DataError, match=r"float labels with integral values \(0 \.\. 2\).*num_classes=3"):
        data.from_arrays(np.zeros((12, 2)), y)
    assert data.from_arrays(np.zeros((12, 2)), y, num_classes=3).num_classes == 3


def test_case_119_string_targets_and_fractions_are_data_errors():
    with pytest.raises(data.DataError, match="regression targets y must be real numbers, got dtype <U"):
        data.from_arrays(np.zeros((10, 1)), np.array(["1.5"] * 10), num_classes=None)
    for name in ("val_fraction", "test_fraction"):
        with pytest.raises(data.DataError, match=rf"{name} must be a number in \[0, 1\), got '0.1' \(str\)"):
            data.from_arrays(np.zeros((10, 1)), np.arange(10) % 2, **{name: "0.1"})
    with pytest.raises(data.DataError, match="train_size must be an integer"):
        data.from_arrays(np.zeros((20, 1)), np.arange(20) % 2, train_size="5")


@pytest.mark.parametrize("bad", [-5, -20, 2.0, "3", True])
def test_case_121_unlabeled_size_is_checked(bad):
    with pytest.raises(data.DataError, match=r"unlabeled_size must be an integer >= 0"):
        data.from_arrays(np.arange(100.0)[:, None], np.arange(100) % 2, unlabeled_size=bad)


@given(
    n=st.integers(2, 300),
    val=st.floats(0.0, 0.6),
    test=st.floats(0.0, 0.6),
    unl=st.integers(0, 120),
    keep=st.none() | st.integers(1, 300),
    seed=st.integers(0, 2**31),
)
def test_case_121_property_splits_are_disjoint_and_add_up(n, val, test, unl, keep, seed):
    x = np.arange(n, dtype=np.float64)[:, None]  # the feature is the example's index
    y = np.arange(n) % 2
    try:
        d = data.from_arrays(
            x, y, seed=seed, val_fraction=val, test_fraction=test, unlabeled_size=unl, train_size=keep, normalize=False
        )
    except data.DataError as e:
        n_test, n_val = int(round(n * test)), int(round(n * val))
        rest = n - n_test - n_val - unl
        assert rest <= 0 or (keep is not None and keep > rest), str(e)
        return
    parts = [d.x_train, d.x_val, d.x_test] + ([] if d.x_unlabeled is None else [d.x_unlabeled])
    idx = [p[:, 0].astype(np.int64) for p in parts]
    flat = np.concatenate(idx)
    assert len(np.unique(flat)) == len(flat)  # no example in two splits
    assert set(flat.tolist()) <= set(range(n))
    assert len(d.x_test) == int(round(n * test)) and len(d.x_val) == int(round(n * val))
    assert (0 if d.x_unlabeled is None else len(d.x_unlabeled)) == unl
    if keep is None:
        assert len(flat) == n
    else:
        assert len(d.x_train) == keep
    for part, labels in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        np.testing.assert_array_equal(part[:, 0].astype(np.int64) % 2, labels)


def test_case_122_huge_features_are_normalized_in_float64():
    rng = np.random.default_rng(0)
    x = 1e30 * (1.0 + rng.standard_normal((200, 3)))
    d = data.from_arrays(x, np.arange(200) % 2)
    assert np.all(np.isfinite(d.x_train)) and np.all(np.isfinite(d.std))
    np.testing.assert_allclose(d.x_train.std(axis=0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(d.x_train.mean(axis=0), 0.0, atol=1e-5)
    const = data.from_arrays(np.full((50, 2), 7.0), np.arange(50) % 2)
    assert np.all(const.x_train == 0.0)
    with pytest.raises(data.DataError, match="beyond float32's range"):
        data.from_arrays(np.full((50, 2), 1e300), np.arange(50) % 2, normalize=False)
