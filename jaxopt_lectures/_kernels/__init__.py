"""The C++ fused-step kernels: built on first use, cached, registered as XLA FFI targets.

``fused_step.cc`` (shipped with the package) is compiled with the system C++ compiler
(``$CXX`` or ``g++``) into ``<cache>/fused_step-<key>.so``. ``<cache>`` is the package's
cache folder, as for the lab: ``$JAXOPT_LECTURES_CACHE``, else
``$XDG_CACHE_HOME/jaxopt_lectures``, else ``~/.cache/jaxopt_lectures``. ``<key>`` hashes the
source, the compiler, its flags, the jaxlib version and the CPU's feature flags (the build
uses ``-march=native``). A build takes about 5 s, once per key.

Loading a shared library runs its code, so the cache is guarded (a library planted by another
user must never be loaded): the cache folder is created with mode 0700, and an existing one
is used only if the current user owns it and neither group nor others can write to it
(:func:`private_dir`); the build writes an unpredictable temporary name (``mkstemp`` in that
folder) and renames it into place atomically; and before loading, the file itself (opened
without following a symbolic link) must be a regular file owned by the current user and not
group/world writable. Anything else is refused with one ``RuntimeWarning`` and the fused
optimizers use the XLA path. An unusable cache folder (not creatable, not writable, not
private) means no persistent cache at all: :func:`usable_cache_dir` says so once, naming
``$JAXOPT_LECTURES_CACHE``.

``load()`` returns the loaded library, or ``None`` when the kernels cannot be had (no
compiler, a failed build, or ``JAXOPT_LECTURES_KERNELS=0``); ``unavailable_reason()`` then
says why. Callers fall back to the pure-JAX path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("fused_step.cc")
# target name (what ffi_call names) -> exported handler symbol in fused_step.cc
TARGETS = {
    "jaxopt_lectures_fused_adam": "JaxoptLecturesFusedAdam",
    "jaxopt_lectures_fused_momentum": "JaxoptLecturesFusedMomentum",
    "jaxopt_lectures_fused_sgd": "JaxoptLecturesFusedSgd",
}
# -ffp-contract=off: only the explicit std::fma of the source (those XLA CPU emits);
# -fno-math-errno lets sqrt vectorize (it does not change any result); no -ffast-math.
FLAGS = (
    "-O3",
    "-march=native",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-pthread",
    "-Wno-return-type",
)
SWITCH_ENV = "JAXOPT_LECTURES_KERNELS"  # "0": never use the kernels
CACHE_ENV = "JAXOPT_LECTURES_CACHE"  # the cache folder (see cache_dir)
BUILD_TIMEOUT_S = 300

_lock = threading.Lock()
_state: dict = {"tried": False, "lib": None, "reason": None}
_cache_warned: set = set()  # cache folders already reported unusable in this process


def cache_dir() -> Path:
    """The package's cache folder (built kernels here; the lab's data sets and compiled
    programs too): ``$JAXOPT_LECTURES_CACHE`` if set (``~`` expanded, made absolute), else
    ``$XDG_CACHE_HOME/jaxopt_lectures`` when that is absolute (the XDG spec ignores a relative
    one), else ``~/.cache/jaxopt_lectures``. Not created here (see :func:`private_dir`)."""
    own = os.environ.get(CACHE_ENV, "").strip()
    if own:  # "~/x" as written in a quoted assignment means the home folder (audit v2 L22)
        return Path(os.path.expanduser(own)).absolute()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if not os.path.isabs(base):  # the XDG spec: a relative path is invalid and ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxopt_lectures"


class UnsafeCacheError(PermissionError):
    """A cache folder or file that another user could have written: never used."""


def check_private(path: str | os.PathLike, st: os.stat_result, what: str) -> None:
    """Raises :class:`UnsafeCacheError` unless ``st`` (of ``path``) is owned by the current
    user and not writable by group or others. No-op where POSIX owners do not exist."""
    if not hasattr(os, "getuid"):  # pragma: no cover - Windows
        return
    uid = os.getuid()
    if st.st_uid != uid:
        raise UnsafeCacheError(
            f"{what} {path} is owned by uid {st.st_uid}, not by the current user (uid {uid}); refusing to use it"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheError(
            f"{what} {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); refusing to use it (chmod go-w it if you "
            "trust what is in it)"
        )


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder only the current user can write to.

    Created with mode 0700 if missing (its parents the usual way); an existing folder must be
    owned by the current user and not group/world writable, else :class:`UnsafeCacheError`.
    Other failures (a file in the way, no permission to create it) raise their ``OSError``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    check_private(path, st, "cache folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable", str(path))
    return path


def usable_cache_dir(sub: str | None = None) -> Path | None:
    """:func:`cache_dir` (or its private sub-folder ``sub``), created on first use, or ``None``
    when it cannot be used safely: then everything runs without a persistent cache, and one
    ``RuntimeWarning`` per process says why and names ``$JAXOPT_LECTURES_CACHE``."""
    root = cache_dir()
    try:
        root = private_dir(root)
        return private_dir(root / sub) if sub else root
    except OSError as e:
        if str(root) not in _cache_warned:
            _cache_warned.add(str(root))
            warnings.warn(
                f"jaxopt_lectures: the cache folder {root} cannot be used ({type(e).__name__}: {e}); "
                f"running without a persistent cache (data regenerated, programs recompiled, no C++ "
                f"kernel); set {CACHE_ENV} to a folder you own",
                RuntimeWarning,
                stacklevel=2,
            )
        return None


def compiler() -> str | None:
    """``$CXX`` if set, else ``g++`` on the PATH (``None`` if there is none)."""
    cxx = os.environ.get("CXX") or "g++"
    return shutil.which(cxx)


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor()


def _compiler_version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout


def library_path(cxx: str) -> Path:
    """``<cache>/fused_step-<key>.so`` for this source, compiler, jaxlib and CPU."""
    import jaxlib

    h = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        cxx.encode(),
        _compiler_version(cxx).encode(),
        " ".join(FLAGS).encode(),
        jaxlib.__version__.encode(),
        platform.machine().encode(),
        _cpu_features().encode(),
    ):
        h.update(part)
        h.update(b"\0")
    return cache_dir() / f"fused_step-{h.hexdigest()[:20]}.so"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def build(cxx: str, target: Path) -> None:
    """Compiles ``fused_step.cc`` into ``target``: an unpredictable temporary name in the
    (private, see :func:`private_dir`) target folder, mode 0700, then an atomic rename."""
    import jax.ffi

    private_dir(target.parent)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = [cxx, *FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE), "-o", str(tmp)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
        os.chmod(tmp, 0o700)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        _write_record(_record_path(target), digest)  # checked before every dlopen (audit v2 L17)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


class DamagedLibraryError(RuntimeError):
    """The cached library is not the one built: its SHA-256 differs from the record written
    at build time, or the record is missing (a truncated ``.so`` would kill the process with
    SIGBUS inside ``dlopen``: audit v2 L17)."""


class _NoRecordError(DamagedLibraryError):
    """A library built before the records were kept: rebuilt quietly (nothing is wrong)."""


def _record_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _write_record(path: Path, digest: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(digest + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _read_record(path: Path) -> str:
    """The recorded SHA-256 (``DamagedLibraryError`` if missing, not a regular file, or not
    one); opened without blocking on a FIFO and without following a link."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _NoRecordError(f"no SHA-256 record {path}") from None
    except OSError as e:
        raise DamagedLibraryError(f"its SHA-256 record {path} cannot be read ({e.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DamagedLibraryError(f"its SHA-256 record {path} is not a regular file")
        text = os.read(fd, 200).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if len(text) != 64:
        raise DamagedLibraryError(f"its SHA-256 record {path} is not a SHA-256")
    return text


def open_library(path: Path) -> ctypes.CDLL:
    """``dlopen`` of ``path`` after checking it: opened without following a symbolic link, it
    must be a regular file owned by the current user and not group/world writable
    (:class:`UnsafeCacheError` otherwise), whose SHA-256 is the one recorded when it was built
    (:class:`DamagedLibraryError` otherwise). The checked file itself is loaded (through
    ``/proc/self/fd`` where there is one), so it cannot be swapped between check and load; a
    failed ``dlopen`` raises ``OSError`` naming ``path``, not the ``/proc`` name."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeCacheError(f"kernel library {path} is a symbolic link; refusing to load it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeCacheError(f"kernel library {path} is not a regular file; refusing to load it")
        check_private(path, st, "kernel library")
        recorded = _read_record(_record_path(path))
        with os.fdopen(os.dup(fd), "rb") as f:
            found = hashlib.file_digest(f, "sha256").hexdigest()
        if found != recorded:
            raise DamagedLibraryError(
                f"kernel library {path} is damaged ({st.st_size} bytes; its SHA-256 differs from the one recorded "
                "when it was built)"
            )
        by_fd = f"/proc/self/fd/{fd}"
        try:
            return ctypes.CDLL(by_fd if os.path.exists(by_fd) else str(path))
        except OSError as e:
            raise OSError(f"kernel library {path} cannot be loaded: {str(e).replace(by_fd, str(path))}") from None
    finally:
        os.close(fd)


def _register(lib: ctypes.CDLL) -> None:
    import jax.ffi

    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")


class _Unavailable(RuntimeError):
    """The kernels are switched off or cannot be built here (not an error)."""


def _load_uncached() -> ctypes.CDLL:
    if os.environ.get(SWITCH_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        raise _Unavailable(f"switched off by {SWITCH_ENV}={os.environ[SWITCH_ENV]}")
    if usable_cache_dir() is None:  # already said once, naming the folder
        raise _Unavailable(f"the cache folder {cache_dir()} cannot be used (see {CACHE_ENV})")
    cxx = compiler()
    if cxx is None:
        raise _Unavailable(f"no C++ compiler: {os.environ.get('CXX') or 'g++'} is not on the PATH")
    path = library_path(cxx)
    with _build_lock(path):
        try:
            if not os.path.lexists(path):
                build(cxx, path)
            lib = open_library(path)
        except _NoRecordError:  # built by an earlier version: replaced quietly, atomically
            build(cxx, path)
            lib = open_library(path)
        except (OSError, DamagedLibraryError) as e:  # damaged, a link, a folder, unloadable: rebuilt once
            aside = _move_aside(path)
            warnings.warn(
                f"jaxopt_lectures: the cached kernel library {path} was not usable ({type(e).__name__}: {e}); "
                f"moved it to {aside} and rebuilding it",
                RuntimeWarning,
                stacklevel=3,
            )
            build(cxx, path)
            lib = open_library(path)
    _register(lib)
    return lib


def _move_aside(path: Path) -> Path | None:
    """Rename the unusable cache entry ``path`` (whatever it is) out of the way, with its
    record; ``None`` when nothing was there."""
    aside = path.with_name(f"{path.name}.damaged-{os.getpid()}-{int(time.time())}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    finally:
        try:
            os.unlink(_record_path(path))
        except FileNotFoundError:
            pass
    return aside


@contextlib.contextmanager
def _build_lock(path: Path):
    """One process at a time checks, moves aside and builds ``path`` (``<path>.lock``, with
    the holder's pid in it); a wait longer than a build is said once and then skipped."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path.with_name(path.name + ".lock"), flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:  # no lock to be had: build unlocked (every write is still atomic)
        yield
        return
    try:
        deadline, said = time.monotonic() + BUILD_TIMEOUT_S + 60, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                break
            except BlockingIOError:
                if not said and time.monotonic() > deadline - BUILD_TIMEOUT_S - 50:  # after 10 s
                    said = True
                    warnings.warn(
                        f"jaxopt_lectures: waiting for another process building the kernel ({path}.lock)",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                if time.monotonic() > deadline:
                    warnings.warn(
                        f"jaxopt_lectures: {path}.lock still held after {BUILD_TIMEOUT_S + 60} s; going on without it",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    break
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def load() -> ctypes.CDLL | None:
    """The kernels' library, built and registered once per process; ``None`` if unavailable."""
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                _state["lib"] = _load_uncached()
            except _Unavailable as e:  # switched off, or no compiler: quietly use the JAX path
                _state["reason"] = str(e)
            except Exception as e:  # noqa: BLE001 - a failed build or load: say so once
                _state["reason"] = f"{type(e).__name__}: {e}"
                warnings.warn(
                    f"jaxopt_lectures: the fused-step C++ kernel is unavailable, the fused "
                    f"optimizers use the XLA path ({_state['reason']})",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return _state["lib"]


def available() -> bool:
    return load() is not None


def unavailable_reason() -> str | None:
    """Why ``load()`` returned ``None`` (``None`` when the kernels are available)."""
    load()
    return _state["reason"]
