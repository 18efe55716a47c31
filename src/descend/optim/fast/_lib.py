"""Build, cache and load the fast-path kernels (``kernels.h`` + ``cpu.cpp``).

The kernels are plain C++ with a C ABI, called through :mod:`ctypes`: no torch headers and no
pybind11, so the build is one ``g++`` call of a few seconds (a torch extension built with
``torch.utils.cpp_extension.load_inline`` took about a minute here). The shared library is
cached per user in ``$DESCEND_CACHE_DIR`` (default ``$XDG_CACHE_HOME/descend`` or
``~/.cache/descend``) under a name keyed by a hash of the sources, the compiler, its flags and
the CPU, so it is built once per machine and rebuilt whenever any of them changes. It is
compiled with ``-fopenmp``; the process already holds torch's ``libgomp.so.1``, which the
loader reuses, so the kernels share torch's thread pool and follow ``torch.set_num_threads``.

If no compiler is found or the build fails, :func:`load` returns None and remembers why
(:func:`status`); the optimizers then keep the default path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch  # noqa: F401 - loads torch's libgomp before the kernels (one OpenMP runtime)

HERE = Path(__file__).resolve().parent
SOURCES = ("kernels.h", "cpu.cpp")
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",  # lets sqrt vectorise; IEEE results (NaN, inf) are unchanged
    "-fopenmp",
    "-std=c++17",
    "-shared",
    "-fPIC",
)

_lock = threading.Lock()
_state: dict = {"loaded": False, "lib": None, "error": None, "path": None, "build_s": None}


class Args(ctypes.Structure):
    """One kernel call's arguments; mirrors ``struct Args`` in ``cpu.cpp`` field by field."""

    _fields_ = [
        ("n", ctypes.c_int64),
        ("numel", ctypes.c_void_p),
        ("param", ctypes.c_void_p),
        ("grad", ctypes.c_void_p),
        ("s0", ctypes.c_void_p),
        ("s1", ctypes.c_void_p),
        ("s2", ctypes.c_void_p),
        ("step", ctypes.c_void_p),
        ("extra", ctypes.c_void_p),
        ("fresh", ctypes.c_void_p),
        ("dtype", ctypes.c_int32),
        ("step_f64", ctypes.c_int32),
        ("extra_f64", ctypes.c_int32),
        ("l2", ctypes.c_int32),
        ("dec", ctypes.c_int32),
        ("mom", ctypes.c_int32),
        ("debias", ctypes.c_int32),
        ("ams", ctypes.c_int32),
        ("hat", ctypes.c_int32),
        ("bias1", ctypes.c_int32),
        ("bias2", ctypes.c_int32),
        ("centered", ctypes.c_int32),
        ("schedule", ctypes.c_int32),
        ("gscale", ctypes.c_double),
        ("clip", ctypes.c_double),
        ("l2_coef", ctypes.c_double),
        ("lr", ctypes.c_double),
        ("keep", ctypes.c_double),
        ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double),
        ("eps_in", ctypes.c_double),
        ("eps_out", ctypes.c_double),
        ("beta", ctypes.c_double),
        ("mom_gain", ctypes.c_double),
        ("nest_scale", ctypes.c_double),
        ("alpha", ctypes.c_double),
        ("lr_decay", ctypes.c_double),
        ("psi", ctypes.c_double),
        ("row_len", ctypes.c_int64),
        ("row_lr", ctypes.c_void_p),
        ("row_keep", ctypes.c_void_p),
        ("row_l2", ctypes.c_void_p),
        ("row_gain", ctypes.c_void_p),
        ("row_nest", ctypes.c_void_p),
        ("el_lr", ctypes.c_void_p),
        ("el_keep", ctypes.c_void_p),
        ("el_l2", ctypes.c_void_p),
    ]


FAMILIES = ("sgd", "adagrad", "rmsprop", "adam", "nadam")


def cache_dir() -> Path:
    """Where built libraries are kept (one file per source/compiler/CPU hash)."""
    env = os.environ.get("DESCEND_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "descend"


def _cpu_signature() -> str:
    """The CPU's model and feature flags (``-march=native`` code is only valid on such a CPU)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(keep)
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    cxx = os.environ.get("CXX", "g++")
    return shutil.which(cxx)


def _compiler_version(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def library_path(cxx: str) -> Path:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((HERE / name).read_bytes())
    for part in (" ".join(FLAGS), _compiler_version(cxx), _cpu_signature(), platform.machine()):
        digest.update(part.encode())
    return cache_dir() / f"descend_fast_{digest.hexdigest()[:16]}.so"


def _build(cxx: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile beside the target and rename: concurrent builders each load a complete file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [cxx, *FLAGS, str(HERE / "cpu.cpp"), "-o", tmp]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _bind(lib: ctypes.CDLL) -> None:
    ptr = ctypes.POINTER(Args)
    for name in FAMILIES:
        fn = getattr(lib, f"descend_{name}")
        fn.argtypes, fn.restype = [ptr], None
    lib.descend_all_finite.argtypes, lib.descend_all_finite.restype = [ptr], ctypes.c_int
    lib.descend_max_threads.argtypes, lib.descend_max_threads.restype = [], ctypes.c_int
    lib.descend_args_size.argtypes, lib.descend_args_size.restype = [], ctypes.c_int64
    if lib.descend_args_size() != ctypes.sizeof(Args):
        raise RuntimeError(
            f"kernel ABI mismatch: C++ Args is {lib.descend_args_size()} bytes, "
            f"Python's {ctypes.sizeof(Args)}"
        )


def load() -> ctypes.CDLL | None:
    """The kernels, building them on first use; None (see :func:`status`) when unavailable."""
    if _state["loaded"]:
        return _state["lib"]
    with _lock:
        if _state["loaded"]:
            return _state["lib"]
        try:
            if os.environ.get("DESCEND_FAST_NO_BUILD"):
                raise RuntimeError("building is disabled by DESCEND_FAST_NO_BUILD")
            cxx = _compiler()
            if cxx is None:
                raise RuntimeError(
                    f"no C++ compiler found (looked for {os.environ.get('CXX', 'g++')!r}; set CXX)"
                )
            path = library_path(cxx)
            if not path.exists():
                if sys.stderr.isatty():  # a pause of several seconds deserves a word
                    print(
                        "descend: building the fast optimizer kernels (once per machine)…",
                        file=sys.stderr,
                        flush=True,
                    )
                start = time.perf_counter()
                _build(cxx, path)
                _state["build_s"] = time.perf_counter() - start
            lib = ctypes.CDLL(str(path))
            _bind(lib)
            _state.update(lib=lib, path=str(path))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            _state["error"] = str(exc)
        _state["loaded"] = True
        return _state["lib"]


def status() -> dict:
    """``{"available", "path", "build_s" (None when the cached library was used), "error"}``."""
    load()
    return {
        "available": _state["lib"] is not None,
        "path": _state["path"],
        "build_s": _state["build_s"],
        "error": _state["error"],
    }
