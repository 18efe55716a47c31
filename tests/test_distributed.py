"""descend inside torch.distributed's engines, on 2 gloo ranks on 127.0.0.1 (CPU).

One spawned job of 2 ranks runs every scenario (a spawn costs seconds of start-up) and each
rank writes what it measured; the tests below assert on it. References are computed in the
same ranks, in one process's terms: the same model, the same descend optimizer, plain
tensors, the full batch. Scenarios:

* DDP: ranks identical and equal to the full-batch run.
* FSDP2 ``fully_shard`` for every optimizer, fp32 and fp64, default (fast) and chain paths:
  parameters equal the full-batch run to 1e-6 / 1e-12 and ``last_path()`` says "fast" on the
  shards; state is DTensor (it saves through DCP).
* A NaN in rank 0's shard (FSDP2) or partition (ZeRO): ``skip`` skips on every rank
  (parameters and state bitwise unchanged, same ``skipped_steps``), ``raise`` raises on every
  rank.
* Global-norm clipping under FSDP2 and ZeRO equals one process.
* DCP: descend → torch.optim → descend (and into descend with the Keras convention's
  defaults) through ``get/set_optimizer_state_dict`` without ``allow_partial_load``; the
  next step after loading equals the next step without a save.

The job is bounded: a hard deadline kills both ranks, gloo's own timeout is 30 s, and every
rank writes its results or its traceback before exiting.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
import warnings
from datetime import timedelta

import pytest
import torch

IN_CI = os.environ.get("CI", "").lower() == "true"
WORLD = 2
DEADLINE_S = 240.0

OPTIMIZERS = {
    "SGD": dict(lr=0.05),
    "SGD-momentum": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "SGD-ema": dict(lr=0.05, momentum=0.9, momentum_form="ema", debias=True),
    "Adagrad": dict(lr=0.05),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
    "Adam": dict(lr=0.01, weight_decay=0.01),
    "AdamW": dict(lr=0.01),
    "Adam-amsgrad": dict(lr=0.01, amsgrad=True),
    "NAdam": dict(lr=0.01),
    "Lion": dict(lr=0.01, weight_decay=0.1),
    # RAdam, Adamax, ADOPT (issue #14)
    "RAdam": dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "Adamax": dict(lr=0.01, weight_decay=0.01),
    "ADOPT": dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    # the mask's scale counts the whole tensor: sharded, the fast path declines (the chain's
    # DTensor ops count every shard) — cautious mask (issue #14, i14kc)
    "Adam-cautious": dict(lr=0.01, cautious=True),
}
# what last_path says of a group that keeps the chain under fused=None on a 2-rank mesh
FSDP_DECLINED = {
    "Adam-cautious": "default: cautious=True with DTensor parameters sharded over 2 ranks: "
    "the mask's scale n/(Σφ + 1) counts the whole tensor, not one shard"
}
DTYPES = {"fp32": torch.float32, "fp64": torch.float64}
TOL = {"fp32": 1e-6, "fp64": 1e-12}
STEPS = 3


def _prerequisites() -> str | None:
    if not torch.distributed.is_available():
        return "torch.distributed is not available in this torch build"
    if not torch.distributed.is_gloo_available():
        return "the gloo backend is not available in this torch build"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what each rank runs ------------------------------------------------------------------
def _model(dtype, seed=0):
    torch.manual_seed(seed)
    # 3 outputs: the last layer's rows shard unevenly (2 and 1) over 2 ranks
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(
        dtype
    )


def _batch(dtype, step):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(8, 6, generator=g, dtype=dtype)
    y = torch.randn(8, 3, generator=g, dtype=dtype)
    return x, y


def _half(t, rank):
    n = t.shape[0] // WORLD
    return t[rank * n : (rank + 1) * n]


def _loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def _make(name, params, **extra):
    import descend.optim as D

    cls = getattr(D, name.split("-")[0])
    return cls(params, **{**OPTIMIZERS[name], **extra})


def _reference(name, dtype, steps=STEPS, **extra):
    """One process, the full batch."""
    model = _model(dtype)
    opt = _make(name, model.parameters(), **extra)
    for step in range(steps):
        opt.zero_grad()
        _loss(model, *_batch(dtype, step)).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _max_diff(params, ref):
    return max(float((_full(p.detach()) - r).abs().max()) for p, r in zip(params, ref))


def _fsdp_model(dtype, mesh):
    from torch.distributed.fsdp import fully_shard

    model = _model(dtype)
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _fsdp_steps(model, opt, dtype, rank, steps=STEPS, first=0):
    for step in range(first, first + steps):
        opt.zero_grad()
        x, y = _batch(dtype, step)
        _loss(model, _half(x, rank), _half(y, rank)).backward()
        opt.step()


def _scenario_ddp(rank, out):
    import descend.optim as D

    dtype = torch.float64
    model = torch.nn.parallel.DistributedDataParallel(_model(dtype))
    opt = _make("Adam", model.parameters())
    for step in range(STEPS):
        opt.zero_grad()
        x, y = _batch(dtype, step)
        _loss(model, _half(x, rank), _half(y, rank)).backward()
        opt.step()
    out["ddp_diff"] = _max_diff(model.parameters(), _reference("Adam", dtype))
    out["ddp_path"] = D.fast.last_path(opt) if hasattr(D, "fast") else None
    out["ddp_params"] = [p.detach().clone() for p in model.parameters()]
    out["ddp_process_group"] = opt.process_group


def _scenario_fsdp(rank, out, mesh):
    from torch.distributed.tensor import DTensor

    from descend.optim.fast import last_path

    for name in OPTIMIZERS:
        for dname, dtype in DTYPES.items():
            ref = _reference(name, dtype)
            for fused in (None, False):
                model = _fsdp_model(dtype, mesh)
                opt = _make(name, model.parameters(), fused=fused)
                _fsdp_steps(model, opt, dtype, rank)
                key = (name, dname, fused)
                out.setdefault("fsdp_diff", {})[key] = _max_diff(model.parameters(), ref)
                out.setdefault("fsdp_path", {})[key] = last_path(opt)
                states = [v for st in opt.state.values() for v in st.values()]
                big = [v for v in states if isinstance(v, torch.Tensor) and v.numel() > 1]
                out.setdefault("fsdp_state_dtensor", {})[key] = bool(big) and all(
                    isinstance(v, DTensor) for v in big
                )


def _snapshot(model, opt):
    params = [p.detach().to_local().clone() for p in model.parameters()]
    state = {
        (i, k): (v.to_local() if hasattr(v, "to_local") else v).clone()
        for i, st in enumerate(opt.state.values())
        if isinstance(st, dict)
        for k, v in st.items()
        if isinstance(v, torch.Tensor)
    }
    return params, state


def _same(a, b):
    pa, sa = a
    pb, sb = b
    return (
        len(pa) == len(pb)
        and all(torch.equal(x, y) for x, y in zip(pa, pb))
        and sa.keys() == sb.keys()
        and all(torch.equal(sa[k], sb[k]) for k in sa)
    )


def _steps(opt):
    return [float(st["step"]) for st in opt.state.values() if isinstance(st, dict)]


def _scenario_nan_fsdp(rank, out, mesh):
    dtype = torch.float32
    for policy in ("skip", "raise"):
        for fused in (None, False):
            model = _fsdp_model(dtype, mesh)
            opt = _make("Adam", model.parameters(), nonfinite=policy, fused=fused)
            _fsdp_steps(model, opt, dtype, rank, steps=1)
            before = _snapshot(model, opt)
            opt.zero_grad()
            x, y = _batch(dtype, 1)
            _loss(model, _half(x, rank), _half(y, rank)).backward()
            if rank == 0:  # a NaN in rank 0's shard only
                model[0].weight.grad.to_local().view(-1)[0] = float("nan")
            raised = False
            try:
                opt.step()
            except FloatingPointError:
                raised = True
            key = (policy, fused)
            out.setdefault("nan_fsdp", {})[key] = dict(
                raised=raised,
                unchanged=_same(before, _snapshot(model, opt)),
                skipped=opt.skipped_steps,
                steps=_steps(opt),
            )
            # the next finite step runs on every rank
            _fsdp_steps(model, opt, dtype, rank, steps=1, first=2)
            out["nan_fsdp"][key]["after"] = _steps(opt)


def _scenario_clip_fsdp(rank, out, mesh):
    from descend.optim.fast import last_path

    for dname, dtype in DTYPES.items():
        ref = _reference("Adam", dtype, max_grad_norm=0.05)
        for fused in (None, False):
            model = _fsdp_model(dtype, mesh)
            opt = _make("Adam", model.parameters(), max_grad_norm=0.05, fused=fused)
            _fsdp_steps(model, opt, dtype, rank)
            out.setdefault("clip_fsdp", {})[(dname, fused)] = (
                _max_diff(model.parameters(), ref),
                last_path(opt),
            )
    # the clip is active: the unclipped run ends elsewhere
    out["clip_effect"] = _max_diff(
        _reference("Adam", torch.float64, max_grad_norm=0.05), _reference("Adam", torch.float64)
    )


def _zero(dtype, **extra):
    from torch.distributed.optim import ZeroRedundancyOptimizer

    import descend.optim as D

    model = _model(dtype)
    kwargs = {**OPTIMIZERS["Adam"], **extra}
    zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=D.Adam, **kwargs)
    return model, zero


def _zero_steps(model, zero, dtype, steps, first=0):
    # full batch on every rank (DDP's averaged gradient): ZeRO partitions the state
    for step in range(first, first + steps):
        zero.zero_grad()
        _loss(model, *_batch(dtype, step)).backward()
        zero.step()


def _scenario_zero_empty_partition(rank, out):
    """One parameter, 2 ranks: rank 1's optimizer holds nothing, and still takes part in the
    decision (no hang), and skips with rank 0."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    import descend.optim as D

    dtype = torch.float64
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3, bias=False).to(dtype)
    zero = ZeroRedundancyOptimizer(
        model.parameters(), optimizer_class=D.Adam, lr=0.01, nonfinite="skip", max_grad_norm=0.5
    )
    before = model.weight.detach().clone()
    x, y = _batch(dtype, 0)
    _loss(model, x, y).backward()
    model.weight.grad.view(-1)[0] = float("nan")
    zero.step()
    out["zero_empty"] = dict(
        local_params=sum(len(g["params"]) for g in zero.optim.param_groups),
        skipped=zero.optim.skipped_steps,
        unchanged=torch.equal(before, model.weight.detach()),
    )


def _scenario_zero(rank, out):
    _scenario_zero_empty_partition(rank, out)
    dtype = torch.float64
    model, zero = _zero(dtype)
    _zero_steps(model, zero, dtype, STEPS)
    out["zero_diff"] = _max_diff(model.parameters(), _reference("Adam", dtype))
    out["zero_group"] = zero.optim.process_group is zero.process_group
    # clipping by the norm of the whole gradient, though each rank holds a partition
    model, zero = _zero(dtype, max_grad_norm=0.05)
    _zero_steps(model, zero, dtype, STEPS)
    out["zero_clip_diff"] = _max_diff(
        model.parameters(), _reference("Adam", dtype, max_grad_norm=0.05)
    )
    for policy in ("skip", "raise"):
        model, zero = _zero(dtype, nonfinite=policy)
        _zero_steps(model, zero, dtype, 1)
        owned_by_0 = zero._partition_parameters()[0][0]["params"][0]
        before = (
            [p.detach().clone() for p in model.parameters()],
            {
                (i, k): v.clone()
                for i, st in enumerate(zero.optim.state.values())
                if isinstance(st, dict)
                for k, v in st.items()
            },
        )
        zero.zero_grad()
        _loss(model, *_batch(dtype, 1)).backward()
        owned_by_0.grad.view(-1)[0] = float("nan")  # in rank 0's partition only
        raised = False
        try:
            zero.step()
        except FloatingPointError:
            raised = True
        after = (
            [p.detach().clone() for p in model.parameters()],
            {
                (i, k): v.clone()
                for i, st in enumerate(zero.optim.state.values())
                if isinstance(st, dict)
                for k, v in st.items()
            },
        )
        out.setdefault("nan_zero", {})[policy] = dict(
            raised=raised,
            unchanged=_same(before, after),
            skipped=zero.optim.skipped_steps,
            local_params=sum(len(g["params"]) for g in zero.optim.param_groups),
        )


def _scenario_dcp(rank, out, mesh, tmp):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    import descend.optim as D

    dtype = torch.float64

    def save(model, opt, path):
        sd = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
        dcp.save(sd, checkpoint_id=path)

    def load(model, opt, path):
        sd = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
        dcp.load(sd, checkpoint_id=path)  # no allow_partial_load
        set_model_state_dict(model, sd["model"])
        set_optimizer_state_dict(model, opt, sd["optim"])

    def full(model):
        return [_full(p.detach()).clone() for p in model.parameters()]

    results = {}
    for name in ("Adam", "AdamW", "NAdam", "RMSprop", "Adagrad", "SGD-momentum"):
        torch_name = name.split("-")[0]
        kwargs = OPTIMIZERS[name]
        # descend runs 2 steps and saves; then a 3rd step without reloading
        model = _fsdp_model(dtype, mesh)
        opt = _make(name, model.parameters())
        _fsdp_steps(model, opt, dtype, rank, steps=2)
        first = os.path.join(tmp, f"{name}-descend")
        save(model, opt, first)
        _fsdp_steps(model, opt, dtype, rank, steps=1, first=2)
        expected3 = full(model)
        _fsdp_steps(model, opt, dtype, rank, steps=1, first=3)
        expected4 = full(model)
        # descend → torch: the 3rd step by torch.optim from descend's checkpoint
        model_t = _fsdp_model(dtype, mesh)
        opt_t = getattr(torch.optim, torch_name)(model_t.parameters(), **kwargs)
        try:
            load(model_t, opt_t, first)
            _fsdp_steps(model_t, opt_t, dtype, rank, steps=1, first=2)
            to_torch = _max_diff(model_t.parameters(), expected3)
            second = os.path.join(tmp, f"{name}-torch")
            save(model_t, opt_t, second)
            # torch → descend: the 4th step by descend from torch's checkpoint
            model_d = _fsdp_model(dtype, mesh)
            opt_d = _make(name, model_d.parameters())
            load(model_d, opt_d, second)
            _fsdp_steps(model_d, opt_d, dtype, rank, steps=1, first=3)
            to_descend = _max_diff(model_d.parameters(), expected4)
            # torch → descend built with the Keras convention's defaults: it loads, and
            # takes torch's hyperparameters and state
            model_k = _fsdp_model(dtype, mesh)
            opt_k = _make(name, model_k.parameters(), convention="keras")
            load(model_k, opt_k, second)
            keras = dict(
                lr=opt_k.param_groups[0]["lr"] == opt_t.param_groups[0]["lr"],
                convention=opt_k.param_groups[0]["convention"],
                state={
                    key: torch.equal(_full(sk[key]), _full(sb[key]))
                    for sk, sb in zip(opt_k.state.values(), opt_t.state.values())
                    for key in sb
                },
            )
            results[name] = dict(to_torch=to_torch, to_descend=to_descend, keras=keras)
        except BaseException:  # noqa: BLE001 - DCP's CheckpointException is one; reported
            results[name] = dict(error=traceback.format_exc(limit=6))
    out["dcp"] = results
    out["dcp_paths"] = D.fast.last_path(opt) if hasattr(D, "fast") else None


def _worker(rank, port, outdir):
    run_scenarios(
        rank,
        port,
        outdir,
        lambda out, mesh: (
            ("ddp", lambda: _scenario_ddp(rank, out)),
            ("zero", lambda: _scenario_zero(rank, out)),
            ("fsdp", lambda: _scenario_fsdp(rank, out, mesh)),
            ("nan_fsdp", lambda: _scenario_nan_fsdp(rank, out, mesh)),
            ("clip_fsdp", lambda: _scenario_clip_fsdp(rank, out, mesh)),
            ("dcp", lambda: _scenario_dcp(rank, out, mesh, outdir)),
        ),
    )


def run_scenarios(rank, port, outdir, scenarios) -> None:
    """One rank of a job: join the gloo group on 127.0.0.1, run each ``(name, fn)`` of
    ``scenarios(out, mesh)`` (a 1-D CPU device mesh of ``WORLD`` ranks), recording its
    error and seconds in ``out``, write ``out`` whole to ``rankR.pt`` and leave."""
    out: dict = {}
    try:
        torch.set_num_threads(1)
        torch.distributed.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD,
            timeout=timedelta(seconds=30),
        )
        from torch.distributed.device_mesh import init_device_mesh

        import descend.optim.fast  # noqa: F401 - last_path

        mesh = init_device_mesh("cpu", (WORLD,))
        for name, run in scenarios(out, mesh):
            t0 = time.perf_counter()
            try:  # a failed scenario fails its tests; the others still run
                run()
            except BaseException:  # noqa: BLE001 - DCP's CheckpointException is one
                out.setdefault("errors", {})[name] = traceback.format_exc()
            out.setdefault("seconds", {})[name] = time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - the parent reports it
        out["error"] = traceback.format_exc()
    finally:
        path = os.path.join(outdir, f"rank{rank}.pt")
        torch.save(out, path + ".part")
        os.replace(path + ".part", path)  # whole or absent: the parent reads only whole files
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        # Leave without the interpreter's teardown: about one run in eight, a C++ thread of
        # torch's distributed runtime aborted there ("terminate called without an active
        # exception") after the results were written.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


# -- the parent: one job, bounded -------------------------------------------------------
def run_ranks(worker, outdir: str, deadline_s: float) -> list[dict]:
    """Spawn ``WORLD`` ranks of ``worker(rank, port, outdir)`` on 127.0.0.1, wait at most
    ``deadline_s`` and return each rank's results (``rankR.pt``, written whole or not at all).
    Fails (CI) or skips (locally) when torch.distributed or gloo is missing."""
    missing = _prerequisites()
    if missing:
        if IN_CI:
            pytest.fail(missing)
        pytest.skip(missing)
    context = torch.multiprocessing.start_processes(
        worker, args=(_free_port(), outdir), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + deadline_s
    paths = [os.path.join(outdir, f"rank{rank}.pt") for rank in range(WORLD)]
    try:
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD}-rank job ran past {deadline_s:.0f} s")
    except torch.multiprocessing.ProcessExitedException as exc:
        # A rank that died after writing its whole result (renamed into place) died in the
        # runtime's teardown, not in a scenario; a rank that died before fails the module.
        if not all(map(os.path.exists, paths)):
            raise
        warnings.warn(f"a rank exited abnormally after writing its results: {exc}", stacklevel=1)
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    results = []
    for rank in range(WORLD):
        out = torch.load(paths[rank], weights_only=False)
        assert "error" not in out, f"rank {rank}:\n{out['error']}"
        results.append(out)
    return results


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(_worker, str(tmp_path_factory.mktemp("dist")), DEADLINE_S)


def _ok(ranks, scenario):
    """Each rank's results, after checking the scenario ran through on every rank."""
    for rank, out in enumerate(ranks):
        error = out.get("errors", {}).get(scenario)
        assert error is None, f"rank {rank}, scenario {scenario}:\n{error}"
    return ranks


def test_ddp_equals_full_batch_and_ranks_agree(ranks):
    ranks = _ok(ranks, "ddp")
    for out in ranks:
        assert out["ddp_diff"] <= 1e-12
        assert out["ddp_process_group"] is None  # DDP: gradients already identical
        assert out["ddp_path"] == {0: "fast"}
    for a, b in zip(ranks[0]["ddp_params"], ranks[1]["ddp_params"]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fused", [None, False], ids=["default", "chain"])
@pytest.mark.parametrize("dname", list(DTYPES))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fsdp2_equals_one_process(ranks, name, dname, fused):
    ranks = _ok(ranks, "fsdp")
    key = (name, dname, fused)
    ranks = _ok(ranks, "fsdp")
    for out in ranks:
        assert out["fsdp_diff"][key] <= TOL[dname]
        assert out["fsdp_state_dtensor"][key] or name == "SGD"  # plain SGD has no state
        expected = "fast" if fused is None else "default: fused=False"
        if fused is None and name in FSDP_DECLINED:
            expected = FSDP_DECLINED[name]
        assert out["fsdp_path"][key] == {0: expected}


@pytest.mark.parametrize("fused", [None, False], ids=["default", "chain"])
def test_fsdp2_nan_in_one_shard_is_decided_for_all_ranks(ranks, fused):
    ranks = _ok(ranks, "nan_fsdp")
    for out in ranks:
        skip = out["nan_fsdp"][("skip", fused)]
        assert not skip["raised"] and skip["unchanged"] and skip["skipped"] == 1
        assert set(skip["steps"]) == {1.0} and set(skip["after"]) == {2.0}
        raised = out["nan_fsdp"][("raise", fused)]
        assert raised["raised"] and raised["unchanged"] and raised["skipped"] == 0
        assert set(raised["after"]) == {2.0}


@pytest.mark.parametrize("fused", [None, False], ids=["default", "chain"])
@pytest.mark.parametrize("dname", list(DTYPES))
def test_fsdp2_global_norm_clipping_equals_one_process(ranks, dname, fused):
    ranks = _ok(ranks, "clip_fsdp")
    for out in ranks:
        diff, path = out["clip_fsdp"][(dname, fused)]
        assert diff <= TOL[dname]
        assert path == {0: "fast" if fused is None else "default: fused=False"}
        assert out["clip_effect"] > 1e-3


def test_zero_equals_full_batch_and_decides_for_all_ranks(ranks):
    ranks = _ok(ranks, "zero")
    # one rank's optimizer held no parameter, and decided with the other
    assert sorted(out["zero_empty"]["local_params"] for out in ranks) == [0, 1]
    for out in ranks:
        assert out["zero_group"]  # "auto": the ZeRO optimizer's process group
        assert out["zero_diff"] <= 1e-12
        assert out["zero_clip_diff"] <= 1e-12
        empty = out["zero_empty"]
        assert empty["skipped"] == 1 and empty["unchanged"]
        skip, raised = out["nan_zero"]["skip"], out["nan_zero"]["raise"]
        assert skip["local_params"] > 0
        assert not skip["raised"] and skip["unchanged"] and skip["skipped"] == 1
        assert raised["raised"] and raised["unchanged"] and raised["skipped"] == 0


@pytest.mark.parametrize("name", ["Adam", "AdamW", "NAdam", "RMSprop", "Adagrad", "SGD-momentum"])
def test_dcp_torch_descend_interchange(ranks, name):
    ranks = _ok(ranks, "dcp")
    for out in ranks:
        result = out["dcp"][name]
        assert "error" not in result, result.get("error")
        # torch's load_state_dict casts NAdam's float32 μ-product to the parameters' dtype
        # (a torch → torch load does too), so the next step computes with a float64 product
        tol = 1e-9 if name == "NAdam" else 1e-12
        assert result["to_torch"] <= tol
        assert result["to_descend"] <= tol
        keras = result["keras"]
        assert keras["lr"] and keras["state"] and keras["convention"] == "keras"
