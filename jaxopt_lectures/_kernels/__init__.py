"""The C++ fused-step kernels: built on first use, cached, registered as XLA FFI targets.

``fused_step.cc`` (shipped with the package) is compiled with the system C++ compiler
(``$CXX`` or ``g++``) into ``<cache>/fused_step-<key>.so``. ``<cache>`` is the package's
cache folder, as for the lab: ``$JAXOPT_LECTURES_CACHE``, else
``$XDG_CACHE_HOME/jaxopt_lectures``, else ``~/.cache/jaxopt_lectures``. ``<key>`` hashes the
source, the compiler, its flags, the jaxlib version and the CPU's feature flags (the build
uses ``-march=native``). The build writes a temporary file and renames it, so concurrent
processes never load half a library. A build takes about 5 s, once per key.

``load()`` returns the loaded library, or ``None`` when the kernels cannot be had (no
compiler, a failed build, or ``JAXOPT_LECTURES_KERNELS=0``); ``unavailable_reason()`` then
says why. Callers fall back to the pure-JAX path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
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
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-std=c++17",
         "-shared", "-fPIC", "-pthread", "-Wno-return-type")
SWITCH_ENV = "JAXOPT_LECTURES_KERNELS"  # "0": never use the kernels
BUILD_TIMEOUT_S = 300

_lock = threading.Lock()
_state: dict = {"tried": False, "lib": None, "reason": None}


def cache_dir() -> Path:
    """The package's cache folder (built kernels here; the lab's data sets and compiled
    programs too): ``$JAXOPT_LECTURES_CACHE`` if set, else ``$XDG_CACHE_HOME/jaxopt_lectures``,
    else ``~/.cache/jaxopt_lectures``. Not created here."""
    if os.environ.get("JAXOPT_LECTURES_CACHE"):
        return Path(os.environ["JAXOPT_LECTURES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxopt_lectures"


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
    for part in (SOURCE.read_bytes(), cxx.encode(), _compiler_version(cxx).encode(),
                 " ".join(FLAGS).encode(), jaxlib.__version__.encode(), platform.machine().encode(),
                 _cpu_features().encode()):
        h.update(part)
        h.update(b"\0")
    return cache_dir() / f"fused_step-{h.hexdigest()[:20]}.so"


def build(cxx: str, target: Path) -> None:
    """Compiles ``fused_step.cc`` into ``target`` (temporary file, then an atomic rename)."""
    import jax.ffi

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    cmd = [cxx, *FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE), "-o", str(tmp)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _register(lib: ctypes.CDLL) -> None:
    import jax.ffi

    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")


class _Unavailable(RuntimeError):
    """The kernels are switched off or cannot be built here (not an error)."""


def _load_uncached() -> ctypes.CDLL:
    if os.environ.get(SWITCH_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        raise _Unavailable(f"switched off by {SWITCH_ENV}={os.environ[SWITCH_ENV]}")
    cxx = compiler()
    if cxx is None:
        raise _Unavailable(f"no C++ compiler: {os.environ.get('CXX') or 'g++'} is not on the PATH")
    path = library_path(cxx)
    if not path.exists():
        build(cxx, path)
    lib = ctypes.CDLL(str(path))
    _register(lib)
    return lib


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
                warnings.warn(f"jaxopt_lectures: the fused-step C++ kernel is unavailable, the fused "
                              f"optimizers use the XLA path ({_state['reason']})", RuntimeWarning, stacklevel=2)
        return _state["lib"]


def available() -> bool:
    return load() is not None


def unavailable_reason() -> str | None:
    """Why ``load()`` returned ``None`` (``None`` when the kernels are available)."""
    load()
    return _state["reason"]
