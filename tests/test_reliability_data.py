"""Reliability and security of the data loaders and caches (issue 13, audit cases 74-136).

Each ``test_case_NNN_*`` reproduces case NNN of ``../shared/reviews/reliability.md``: it failed
on 75af9b4 and passes now.
"""

import os
import shutil
import stat
import subprocess
import zipfile

import numpy as np
import pytest

from jaxopt_lectures import _kernels
from jaxopt_lectures.lab import _paths, data

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXOPT_LECTURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(_kernels.SWITCH_ENV, raising=False)
    monkeypatch.setattr(_kernels, "_cache_warned", set())
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
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void ran(void) {\n'
                   f'  FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }}\n}}\n')
    subprocess.run([_kernels.compiler(), "-shared", "-fPIC", str(src), "-o", str(target)], check=True,
                   capture_output=True, timeout=120)


@pytest.fixture
def planted(tmp_path):
    if _kernels.compiler() is None:
        pytest.skip("no C++ compiler to build a planted library with")
    folder = _kernels.private_dir(_kernels.cache_dir())
    target = _kernels.library_path(_kernels.compiler())
    assert target.parent == folder
    marker = tmp_path / "marker"
    _plant(target, marker, tmp_path)
    return target, marker


def test_case_136_group_or_world_writable_library_is_not_loaded(planted):
    target, marker = planted
    target.chmod(0o666)
    with pytest.warns(RuntimeWarning, match=r"XLA path \(UnsafeCacheError: kernel library .* writable by group"):
        assert _kernels.load() is None
    assert not marker.exists()


def test_case_136_library_of_another_user_is_not_loaded(planted, monkeypatch):
    target, marker = planted
    target.chmod(0o700)
    real_fstat = os.fstat

    def fstat(fd):
        s = real_fstat(fd)
        if stat.S_ISREG(s.st_mode) and s.st_ino == os.stat(target).st_ino:
            return os.stat_result((s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid + 4242, *tuple(s)[5:]))
        return s

    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.warns(RuntimeWarning, match=r"kernel library .* is owned by uid \d+, not by the current user"):
        assert _kernels.load() is None
    assert not marker.exists()


def test_case_136_symlinked_library_is_not_loaded(planted, tmp_path):
    target, marker = planted
    elsewhere = tmp_path / "elsewhere.so"
    shutil.move(target, elsewhere)
    elsewhere.chmod(0o700)
    target.symlink_to(elsewhere)
    with pytest.warns(RuntimeWarning, match="is a symbolic link; refusing"):
        assert _kernels.load() is None
    assert not marker.exists()


def test_case_136_build_uses_an_unpredictable_temp_name_and_renames(tmp_path):
    seen = tmp_path / "seen"
    cxx = tmp_path / "fakecxx"
    cxx.write_text('#!/bin/sh\nwhile [ $# -gt 1 ]; do if [ "$1" = -o ]; then '
                   f'echo "$2" > {seen}; echo lib > "$2"; fi; shift; done\n')
    cxx.chmod(0o700)
    folder = tmp_path / "kcache"
    target = folder / "fused_step-abc.so"
    _kernels.build(str(cxx), target)
    tmp_name = seen.read_text().strip()
    assert os.path.dirname(tmp_name) == str(folder)
    assert tmp_name != str(folder / f".{target.name}.{os.getpid()}.tmp")
    assert not tmp_name.endswith(f".{os.getpid()}.tmp") and not os.path.exists(tmp_name)
    assert _mode(folder) == 0o700 and _mode(target) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == [target.name]
    # a failed build leaves no temporary file behind
    cxx.write_text("#!/bin/sh\nexit 3\n")
    with pytest.raises(RuntimeError, match=r"failed \(3\)"):
        _kernels.build(str(cxx), folder / "other.so")
    assert sorted(p.name for p in folder.iterdir()) == [target.name]


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
