"""Build, cache and load descend's kernels (the C++ sources of this folder) as one library.

The kernels are plain C++ with a C ABI, called through :mod:`ctypes`: no torch headers and no
pybind11, so the build is three ``g++`` compilations side by side and a link, about ten
seconds (a torch extension built with
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

import torch  # loads torch's libgomp before the kernels (one OpenMP runtime)

from .abi import FAMILIES, LANDSCAPES, TORCH_SHIM, TORCH_SHIM_CONSTS, Args, CheckArgs, LabArgs

HERE = Path(__file__).resolve().parent
SOURCES = (
    "kernels.h",
    "drivers.h",
    "cpu.cpp",
    "landscapes.h",
    "track.h",
    "lab.cpp",
    "check.cpp",
    "monitor.cpp",
)
UNITS = ("cpu.cpp", "lab.cpp", "check.cpp", "monitor.cpp")  # compiled side by side, then linked
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
    """Compile each unit to an object file (side by side: one process per unit), then link."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent builders each load a complete file.
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    compile_flags = [f for f in FLAGS if f != "-shared"]
    try:
        jobs = []
        for unit in UNITS:
            obj = work / (Path(unit).stem + ".o")
            cmd = [cxx, *compile_flags, "-c", str(HERE / unit), "-o", str(obj)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            jobs.append((cmd, proc, obj))
        try:
            for cmd, proc, _ in jobs:
                _, err = proc.communicate(timeout=300)
                if proc.returncode != 0:
                    raise RuntimeError(_failed(cmd, err))
        finally:
            for _, proc, _ in jobs:  # after a failure: stop the other units' compilers
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        tmp = work / "lib.so"
        cmd = [cxx, *FLAGS, *(str(obj) for _, _, obj in jobs), "-o", str(tmp)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(_failed(cmd, out.stderr))
        os.replace(tmp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _failed(cmd: list[str], stderr: str) -> str:
    """A failed compiler call in the compiler's own words (its first errors: the cause)."""
    return f"the kernel build failed: {' '.join(cmd)}\n{stderr.strip()[:3000]}"


def _bind(lib: ctypes.CDLL) -> None:
    """Declare the entry points' signatures and check the library against :mod:`.abi`."""
    ptr, lab_ptr = ctypes.POINTER(Args), ctypes.POINTER(LabArgs)
    for name in FAMILIES:
        fn = getattr(lib, f"descend_{name}")
        fn.argtypes, fn.restype = [ptr], None
    signatures = {
        "descend_all_finite": ([ptr], ctypes.c_int),
        "descend_max_threads": ([], ctypes.c_int),
        "descend_args_size": ([], ctypes.c_int64),
        "descend_lab_args_size": ([], ctypes.c_int64),
        "descend_landscape": ([lab_ptr], ctypes.c_int64),
        "descend_lab_step": ([ctypes.c_void_p, lab_ptr], ctypes.c_int64),
        "descend_landscape_name": ([ctypes.c_int32], ctypes.c_char_p),
        "descend_check": ([ctypes.POINTER(CheckArgs)], ctypes.c_int32),
        "descend_check_args_size": ([], ctypes.c_int64),
        "descend_read_scalars": ([ctypes.POINTER(CheckArgs), ctypes.c_void_p], ctypes.c_int32),
        "descend_set_torch": ([ctypes.c_void_p, ctypes.c_void_p], None),
    }
    for name, (argtypes, restype) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    sizes = (
        (Args, lib.descend_args_size()),
        (LabArgs, lib.descend_lab_args_size()),
        (CheckArgs, lib.descend_check_args_size()),
    )
    for struct, size in sizes:
        if size != ctypes.sizeof(struct):
            raise RuntimeError(
                f"kernel ABI mismatch: C++ {struct.__name__} is {size} bytes, "
                f"Python's {ctypes.sizeof(struct)}"
            )
    for name, index in LANDSCAPES.items():
        if lib.descend_landscape_name(index) != name.encode():
            raise RuntimeError(f"kernel ABI mismatch: landscape id {index} is not {name!r}")
    _connect_torch(lib)


def _connect_torch(lib: ctypes.CDLL) -> None:
    """Hand ``check.cpp`` the torch C shim functions (``aoti_torch_*`` of libtorch_cpu, a
    stable C ABI) it reads tensors with, so the library links nothing of torch."""
    folder = Path(torch.__file__).resolve().parent / "lib"
    candidates = sorted(folder.glob("libtorch_cpu.*"))
    try:
        shim = ctypes.CDLL(str(candidates[0])) if candidates else ctypes.CDLL(None)
        fns = [getattr(shim, f"aoti_torch_{name}") for name in TORCH_SHIM]
        consts = [getattr(shim, f"aoti_torch_{name}") for name in TORCH_SHIM_CONSTS]
    except (OSError, AttributeError) as exc:
        raise RuntimeError(f"torch's C shim (aoti_torch_*) is not available: {exc}") from None
    for fn in consts:
        fn.argtypes, fn.restype = [], ctypes.c_int32
    addresses = (ctypes.c_void_p * len(fns))(*(ctypes.cast(f, ctypes.c_void_p).value for f in fns))
    values = (ctypes.c_int32 * len(consts))(*(fn() for fn in consts))
    lib.descend_set_torch(addresses, values)


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
