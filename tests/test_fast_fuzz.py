"""Fuzzing the fast path's memory safety: parameters that change under the optimizer.

Hypothesis draws cases — an optimizer of every named family and convention, a group of
parameters (float32/float64, contiguous, non-contiguous, ``channels_last``, views into a larger
buffer, zero-size, mixed dtypes, a meta-device parameter in the group, or a DTensor group on a
one-rank gloo mesh at 127.0.0.1) and, between steps, mutations: ``p.data`` resized (fewer or
more elements), re-assigned, replaced by a view at an offset, by a non-contiguous or
``channels_last`` tensor, by a zero-size tensor, a state tensor shrunk. (A freed storage
crashes torch's own ops, so ``test_fast_path`` tests it with ``fused=True``.) Each case runs
twice from the same start with the same gradients: on the default choice (``fused=None``:
the fast kernels wherever the group qualifies) and on the chain (``fused=False``).

Asserted: no crash; both runs end alike — the same exception at the same step, or parameters
equal to the kernels' documented rounding (fp32 ‖a − b‖ ≤ 1e-6‖b‖, fp64 ≤ 1e-12‖b‖, as
``test_fast_path``); a group that qualifies (plain contiguous CPU tensors of one float dtype,
DTensor groups included) took the fast path (``last_path``); the non-finite check on the
final tensors does not crash either.

The cases run in a child process (``python tests/test_fast_fuzz.py --worker``, one case per
line of JSON on its stdin, one verdict per line on its stdout), so a segmentation fault is a
failed example naming the case — then a fresh worker takes the next — not the end of the
suite. 500 derandomised examples, about 20 s.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_kernels
from descend.optim import REGISTRY, available

EXAMPLES = 500
CONVENTIONS = ("torch", "keras", "optax")
CASE_TIMEOUT_S = 120  # the first case pays the worker's start (torch import, gloo)


def _has_kernel(name: str) -> bool:
    """Whether the spec's chain core declares a fast kernel (Newton, Lion … do not)."""
    import torch

    from descend.optim import REGISTRY
    from descend.optim.fast.plan import Unsupported, shape_of

    cls = REGISTRY[name].cls
    if not getattr(cls, "fast_path", False):
        return False
    opt = cls([torch.zeros(1, requires_grad=True)], **REGISTRY[name].preset)
    try:
        shape_of(opt.chain(opt.param_groups[0]).transforms)
    except Unsupported:
        return False
    return True


FAMILIES = [name for name in available() if _has_kernel(name)]


def _conventions(name: str) -> list[str]:
    """The conventions the spec's optimizer has (RAdam and ADOPT have no Keras row)."""
    from descend.optim import REGISTRY

    have = REGISTRY[name].cls.conventions
    return [c for c in ("torch", "keras", "optax") if c in have]


def _takes_cautious(name: str, convention: str) -> bool:
    """Whether ``cautious=True`` is valid for the spec (momentum-based, with a momentum)."""
    import torch

    from descend.optim import REGISTRY, from_spec

    if not getattr(REGISTRY[name].cls, "momentum_based", False):
        return False
    try:
        from_spec(f"{name}:convention={convention},cautious=True", [torch.zeros(1)])
    except ValueError:
        return False
    return True


LAYOUTS = ["contiguous", "contiguous", "noncontiguous", "channels_last", "view", "zero"]
MUTATIONS = [
    "none",
    "none",
    "shrink_data",
    "grow_data",
    "reassign_data",
    "view_data",
    "noncontiguous_data",
    "channels_last_data",
    "zero_data",
    "shrink_state",
]


# -- the worker (a child process) --------------------------------------------------------


def _mesh():
    """A one-rank gloo mesh on 127.0.0.1, made at the first DTensor case."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    return init_device_mesh("cpu", (1,))


def _tensor(torch, shape, layout, dtype, gen):
    """A fresh parameter value of ``shape`` laid out as ``layout``."""
    if layout == "zero":
        return torch.empty((0,), dtype=dtype)
    values = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    if layout == "noncontiguous" and len(shape) >= 2 and shape[0] > 1 and shape[1] > 1:
        return values.transpose(0, 1).contiguous().transpose(0, 1)
    if layout == "channels_last" and len(shape) == 4:
        return values.contiguous(memory_format=torch.channels_last)
    if layout == "view":  # a view at an offset into a larger buffer
        n = values.numel()
        big = torch.zeros(n + 7, dtype=dtype)
        big[5 : 5 + n] = values.reshape(-1)
        return big[5 : 5 + n].view(shape)
    return values


def _mutate(torch, opt, p, kind, gen):
    """One change between steps, as user code (or FSDP) might make it."""
    data = p.data
    if kind == "shrink_data" and data.numel() > 1:
        p.data = data.reshape(-1)[: data.numel() // 2]
    elif kind == "grow_data":
        p.data = torch.randn(data.numel() * 2 + 3, generator=gen, dtype=torch.float64).to(
            data.dtype
        )
    elif kind == "reassign_data":
        p.data = data.clone() + 0.5
    elif kind == "view_data":
        n = data.numel()
        big = torch.zeros(n + 11, dtype=data.dtype)
        big[3 : 3 + n] = data.reshape(-1)
        p.data = big[3 : 3 + n].view(data.shape)
    elif kind == "noncontiguous_data" and data.dim() >= 2:
        p.data = data.transpose(0, 1).contiguous().transpose(0, 1)
    elif kind == "channels_last_data" and data.dim() == 4:
        p.data = data.contiguous(memory_format=torch.channels_last)
    elif kind == "zero_data":
        p.data = data.new_empty((0,))
    elif kind == "shrink_state":
        st = opt.state.get(p, {})
        for key, value in list(st.items()):
            if key != "step" and isinstance(value, torch.Tensor) and value.numel() > 1:
                st[key] = value.reshape(-1)[:1]
                break


def _grads(torch, params, step):
    """∇ of Σ ¼p⁴ + ½p² + 0.3·p·sin(3p + t/10), computed from each parameter as it is now."""
    for p in params:
        x = p.detach()
        phase = 3 * x + step / 10
        p.grad = x**3 + x + 0.3 * torch.sin(phase) + 0.9 * x * torch.cos(phase)


def _run(case, fused):
    """The case from its start with ``fused``: (outcome, parameters, paths per step)."""
    import torch

    from descend.optim import fast, from_spec

    gen = torch.Generator().manual_seed(case["seed"])
    mesh = _mesh() if case["dtensor"] else None
    params = []
    for shape, layout, dtype, device in case["params"]:
        value = _tensor(torch, tuple(shape), layout, getattr(torch, dtype), gen)
        if device == "meta":
            value = value.to("meta")
        if mesh is not None:
            from torch.distributed.tensor import Replicate, Shard, distribute_tensor

            place = Shard(0) if case["shard"] and value.dim() > 0 else Replicate()
            value = distribute_tensor(value.contiguous(), mesh, [place])
        params.append(torch.nn.Parameter(value))
    opt = from_spec(case["spec"], params, fused=fused)
    paths = []
    outcome = "ok"
    try:
        for step, moves in enumerate(case["mutations"]):
            for p, kind in zip(params, moves):
                _mutate(torch, opt, p, kind, gen)
            _grads(torch, params, step)
            opt.step()
            paths.append(fast.last_path(opt).get(0))
    except Exception as exc:  # noqa: BLE001 - the outcome compared between the paths
        outcome = f"{type(exc).__name__} at step {len(paths)}"
    values = []
    for p in params:
        t = p.detach()
        if mesh is not None:
            t = t.full_tensor()
        values.append(None if t.is_meta else t.clone())
    return outcome, values, paths, opt


def _check(case) -> str | None:
    """None when the case holds, else what went wrong."""
    import torch

    out_fast, fast_values, fast_paths, opt = _run(case, None)
    out_chain, chain_values, _, _ = _run(case, False)
    if out_fast != out_chain:
        return f"fused=None ended {out_fast!r}, fused=False {out_chain!r}"
    for i, (a, b) in enumerate(zip(fast_values, chain_values)):
        if (a is None) != (b is None):
            return f"parameter {i}: readable on one path only"
        if a is None:
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"parameter {i}: {a.shape}/{a.dtype} against {b.shape}/{b.dtype}"
        tol = 1e-6 if a.dtype == torch.float32 else 1e-12
        da, db = a.double(), b.double()
        if not torch.equal(da.isfinite(), db.isfinite()):
            return f"parameter {i}: non-finite elements differ"
        fin = db.isfinite()
        err = float((da[fin] - db[fin]).norm()) if fin.any() else 0.0
        ref = float(db[fin].norm()) if fin.any() else 0.0
        if err > tol * ref + 1e-30:
            return f"parameter {i}: ‖fast − chain‖ = {err:.3g}, ‖chain‖ = {ref:.3g}"
    if case["qualifies"] and out_fast == "ok" and set(fast_paths) != {"fast"}:
        return f"a qualifying group took {fast_paths}"
    # the one-pass non-finite check reads the same tensors: it must never crash either
    grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
    try:
        opt._check_finite(grads)
    except Exception:  # noqa: BLE001, S110 - torch may refuse odd tensors; only a crash counts
        pass
    return None


def worker() -> None:
    """Read cases (JSON lines) from stdin; answer each with a JSON verdict line."""
    import torch

    torch.set_num_threads(1)
    for line in sys.stdin:
        case = json.loads(line)
        print(json.dumps({"start": True}), flush=True)
        try:
            error = _check(case)
        except Exception as exc:  # noqa: BLE001 - reported as the case's failure
            error = f"the harness raised {type(exc).__name__}: {exc}"
        print(json.dumps({"error": error}), flush=True)


# -- the parent: hypothesis draws cases, the worker runs them ------------------------------


class Worker:
    """A child process running cases; restarted after it dies."""

    def __init__(self):
        self.proc = None
        self.log = tempfile.TemporaryFile(mode="w+")  # stderr: a pipe nobody reads would fill

    def start(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.log.seek(0)
        self.log.truncate()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put("")  # end of output: the worker exited

    def _line(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return ""

    def run(self, case: dict) -> str | None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        started = self._line(CASE_TIMEOUT_S)
        verdict = self._line(CASE_TIMEOUT_S) if started else ""
        if verdict:
            return json.loads(verdict)["error"]
        self.stop()  # died (a crash) or hung: both are failures of this case
        self.log.seek(0)
        err = self.log.read()[-1500:]
        return f"the worker died (exit {self.proc.returncode}) running the case:\n{err}"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)
            self.proc.stdin.close()


@pytest.fixture(scope="module")
def child():
    require_kernels()
    w = Worker()
    yield w
    w.stop()
    w.log.close()


SHAPES = st.sampled_from([(7, 3), (), (0,), (40,), (2, 3, 4, 5), (1, 1), (5, 4, 1, 2), (33,)])


@st.composite
def cases(draw) -> dict:
    spec = draw(st.sampled_from(FAMILIES))
    cls = REGISTRY[spec].cls  # Rprop: no weight_decay keyword
    convention = draw(st.sampled_from(_conventions(spec)))
    options = [f"convention={convention}", "lr=0.01"]
    if "weight_decay" in cls.keywords and draw(st.booleans()):
        options.append("weight_decay=0.05")
    if draw(st.integers(0, 4)) == 0:
        options.append("max_grad_norm=0.5")
    maximizing = ("adam", "nadam", "rmsprop", "lion", "ademamix", "schedule-free-adamw")
    maximizing += ("radam", "adamax", "adopt", "adadelta", "rprop", "asgd")
    if spec in (*maximizing, "schedule-free-sgd") and draw(st.booleans()):
        options.append("maximize=True")
    if _takes_cautious(spec, convention) and draw(st.booleans()):  # the mask's two passes
        options.append("cautious=True")
    dtensor = draw(st.integers(0, 5)) == 0
    dtype = draw(st.sampled_from(["float32", "float64"]))
    n = draw(st.integers(1, 3))
    params = []
    for _ in range(n):
        shape = draw(SHAPES)
        layout = "contiguous" if dtensor else draw(st.sampled_from(LAYOUTS))
        pdtype = dtype
        device = "cpu"
        if not dtensor and draw(st.integers(0, 9)) == 0:
            pdtype = "float64" if dtype == "float32" else "float32"  # mixed dtypes in a group
        if not dtensor and draw(st.integers(0, 14)) == 0:
            device = "meta"  # a second device in the group (no GPU here)
        params.append([list(shape), layout, pdtype, device])
    steps = draw(st.integers(2, 4))
    if dtensor:
        mutations = [["none"] * n for _ in range(steps)]
    else:
        mutations = [
            [draw(st.sampled_from(MUTATIONS)) if t else "none" for _ in range(n)]
            for t in range(steps)
        ]
    plain = all(
        layout in ("contiguous", "view", "zero") and pdtype == dtype and device == "cpu"
        for _, layout, pdtype, device in params
    )
    unmutated = all(kind == "none" for moves in mutations for kind in moves)
    return {
        "spec": f"{spec}:{','.join(options)}",
        "params": params,
        "mutations": mutations,
        "dtensor": dtensor,
        "shard": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**31 - 1)),
        # contiguous CPU tensors of one float dtype, nothing changed between steps
        "qualifies": plain and unmutated,
    }


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_fast_path_survives_mutated_parameters(child, case):
    error = child.run(case)
    assert error is None, f"{error}\ncase: {json.dumps(case)}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtensor_on_a_one_rank_mesh_steps_on_the_fast_kernels(child, dtype):
    """FSDP2 / tensor-parallel parameters: a DTensor group (sharded and replicated parameters
    mixed) on a one-rank gloo mesh takes the fast kernels under the default ``fused=None``
    (through its local shards, clipping included) and ends equal to ``fused=False``."""
    for spec in FAMILIES:
        decay = "weight_decay=0.05," if "weight_decay" in REGISTRY[spec].cls.keywords else ""
        for options in ("lr=0.01", f"lr=0.01,{decay}max_grad_norm=0.5"):
            case = {
                "spec": f"{spec}:{options}",
                "params": [[[40], "contiguous", dtype, "cpu"], [[7, 3], "contiguous", dtype, "cpu"],
                           [[], "contiguous", dtype, "cpu"]],
                "mutations": [["none"] * 3] * 5,
                "dtensor": True,
                "shard": True,
                "seed": 7,
                "qualifies": True,  # the worker asserts last_path == "fast" at every step
            }  # fmt: skip
            error = child.run(case)
            assert error is None, f"{error}\ncase: {json.dumps(case)}"


def test_the_fuzz_reaches_every_family_and_mutation():
    """The strategy covers what the module docstring promises (a cheap guard against a
    strategy that silently stops drawing some of it)."""
    seen_specs, seen_moves, seen_dtensor, seen_meta = set(), set(), False, False
    seen_cautious = set()
    strategy = cases()

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None)
    @given(case=strategy)
    def collect(case):
        nonlocal seen_dtensor, seen_meta
        seen_specs.add(case["spec"].split(":")[0])
        if "cautious=True" in case["spec"]:
            seen_cautious.add(case["spec"].split(":")[0])
        seen_moves.update(k for moves in case["mutations"] for k in moves)
        seen_dtensor |= case["dtensor"]
        seen_meta |= any(device == "meta" for *_, device in case["params"])

    collect()
    assert seen_specs == set(FAMILIES)
    assert seen_cautious == {f for f in FAMILIES if any(_takes_cautious(f, c) for c in CONVENTIONS)}
    assert seen_moves == set(MUTATIONS)
    assert seen_dtensor and seen_meta


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    worker()
