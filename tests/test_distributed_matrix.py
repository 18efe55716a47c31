"""Matrix methods and global estimates across 2 gloo ranks on 127.0.0.1 (CPU): one job.

What a step reads beyond one coordinate must be the whole model's, though each rank holds a
shard of it. Each rank runs, on FSDP2 (``fully_shard``, DTensor ``Shard(0)`` parameters; the
last layer's 3 rows shard unevenly, 2 and 1) in float64 and float32, and compares with the
same descend optimizer in one process (plain tensors, the full batch):

* Muon (torch, optax and Keras conventions) and SOAP: the matrix is gathered, stepped whole,
  and each rank keeps its shard; the momentum (SOAP: m, v) stays sharded like the parameter,
  SOAP's factors and bases (GG, Q) are whole on every rank and bitwise the same on both.
* Prodigy: d is one estimate over both ranks' shares (same d on both ranks, equal to one
  process's); also under ``ZeroRedundancyOptimizer``, where a rank may hold no parameter.
  Newton (one solve over the whole model) is refused under ZeRO.
* Per-tensor norms: LAMB's and LARS's trust ratio ‖θ‖/‖u‖, Adafactor's factored rows and
  columns and its RMS clipping, the cautious mask's scale n/(Σφ + 1).
* DCP: Muon, SOAP and Prodigy save after 2 steps and a fresh optimizer that loads the
  checkpoint takes the 3rd step as the saving one did.
* The collectives of one step, counted by ``CommDebugMode``: one all-gather per matrix (Muon,
  SOAP), one all-reduce for all of Prodigy's sums or of LAMB's/LARS's norms.

Every rank trains on the full batch, so the gradient each shard receives (FSDP2's mean of
equal gradients) is bitwise the one-process gradient and the comparison measures the sharded
step alone. With half batches (data parallel as it is used: also run, in float64) the two
gradients differ in the last bit, and SOAP's eigenbasis of a rank-deficient factor (GGᵀ of an
8 × 6 gradient has a 2-dimensional null space, whose basis is arbitrary) or torch's bfloat16
Newton–Schulz in float32 turn such a difference into a visible one — the algorithms'
sensitivity, not the sharding's. The job is bounded as tests/test_distributed.py's: a
deadline kills both ranks, gloo's timeout is 30 s, and each rank writes its results or its
traceback.
"""

from __future__ import annotations

import os
import traceback

import pytest
import torch

from test_distributed import (
    DTYPES,
    TOL,
    _batch,
    _fsdp_model,
    _full,
    _loss,
    _max_diff,
    _model,
    _ok,
    run_ranks,
    run_scenarios,
)

DEADLINE_S = 120.0
STEPS = 4  # SOAP (precondition_frequency=2) runs a power iteration at its 3rd step

CASES = {
    "Muon-torch": ("Muon", dict(lr=0.02)),
    "Muon-optax": ("Muon", dict(lr=0.02, convention="optax", weight_decay=0.01)),
    "Muon-keras": ("Muon", dict(lr=0.02, convention="keras")),
    "SOAP": ("SOAP", dict(lr=0.01, precondition_frequency=2)),
    "Prodigy": ("Prodigy", dict(weight_decay=0.01, d0=1e-3)),
    "LAMB": ("LAMB", dict(lr=0.01, weight_decay=0.01)),
    "LARS": ("LARS", dict(lr=0.5, momentum=0.9, weight_decay=1e-3)),
    "Adafactor": ("Adafactor", dict(lr=0.01)),
    "Adam-cautious": ("Adam", dict(lr=0.01, cautious=True)),
}
DCP_CASES = ("Muon-torch", "SOAP", "Prodigy")
HALF_CASES = ("Muon-torch", "Muon-keras", "Prodigy", "LAMB", "Adafactor")


def _make(name, params, **extra):
    import descend.optim as D

    cls, kwargs = CASES[name]
    return getattr(D, cls)(params, **{**kwargs, **extra})


def _train(model, opt, dtype, steps, first=0):
    for step in range(first, first + steps):
        opt.zero_grad()
        _loss(model, *_batch(dtype, step)).backward()  # the full batch on every rank
        opt.step()


def _reference(name, dtype, steps=STEPS, zero_start=False):
    """One process, plain tensors, the full batch: parameters and the optimizer."""
    model = _model(dtype)
    if zero_start:
        torch.nn.init.zeros_(model[2].bias)
    opt = _make(name, model.parameters())
    _train(model, opt, dtype, steps)
    return [p.detach().clone() for p in model.parameters()], opt


def _layout(t):
    """'sharded' (a DTensor laid out as its parameter), 'whole' (a plain tensor) or what
    else it is."""
    from torch.distributed.tensor import DTensor

    if isinstance(t, DTensor):
        return "sharded" if all(p.is_shard(0) for p in t.placements) else str(t.placements)
    return "whole" if isinstance(t, torch.Tensor) else type(t).__name__


def _scenario_fsdp(rank, out, mesh):
    from descend.optim.fast import last_path

    for name in CASES:
        for dname, dtype in DTYPES.items():
            ref, ref_opt = _reference(name, dtype)
            model = _fsdp_model(dtype, mesh)
            opt = _make(name, model.parameters())
            _train(model, opt, dtype, STEPS)
            weight = opt.state[model[0].weight]
            result = dict(
                diff=_max_diff(model.parameters(), ref),
                moved=_max_diff(
                    model.parameters(), [p.detach() for p in _model(dtype).parameters()]
                ),
                path=last_path(opt),
                layout={k: _layout(v) for k, v in weight.items() if k != "step"},
            )
            if name == "SOAP":  # the factors and bases, to compare across ranks
                result["whole"] = [t.clone() for t in [*weight["GG"], *weight["Q"]]]
                result["whole_layout"] = [_layout(t) for t in [*weight["GG"], *weight["Q"]]]
                ref_state = ref_opt.state[next(iter(ref_opt.param_groups[0]["params"]))]
                result["whole_diff"] = max(
                    float((a - b).abs().max())
                    for a, b in zip(
                        [*weight["GG"], *weight["Q"]], [*ref_state["GG"], *ref_state["Q"]]
                    )
                )
            if name == "Prodigy":
                result["d"] = (opt.param_groups[0]["d"], ref_opt.param_groups[0]["d"])
            if dname == "fp64":  # the collectives of one more step
                from torch.distributed.tensor.debug import CommDebugMode

                opt.zero_grad()
                _loss(model, *_batch(dtype, STEPS)).backward()
                with CommDebugMode() as comm:
                    opt.step()
                comms = {"all_gather": 0, "all_reduce": 0}
                for op, n in comm.get_comm_counts().items():
                    kind = str(op).split(".")[-1].replace("allreduce", "all_reduce")
                    kind = kind.removesuffix("_").removesuffix("_into_tensor")
                    comms[kind] = comms.get(kind, 0) + n
                result["comms"] = comms
            out.setdefault("fsdp", {})[(name, dname)] = result


def _scenario_half_batches(rank, out, mesh):
    """Data parallel as it is used: each rank on its half of the batch (the gradients then
    differ from one process's in the last bit; float64, where that stays below 1e-12)."""
    from test_distributed import _half

    dtype = torch.float64
    for name in HALF_CASES:
        ref, _ = _reference(name, dtype)
        model = _fsdp_model(dtype, mesh)
        opt = _make(name, model.parameters())
        for step in range(STEPS):
            opt.zero_grad()
            x, y = _batch(dtype, step)
            _loss(model, _half(x, rank), _half(y, rank)).backward()
            opt.step()
        out.setdefault("half", {})[name] = _max_diff(model.parameters(), ref)


def _scenario_prodigy_zero_start(rank, out, mesh):
    """A bias starting at 0 keeps a 0-d θ₀, decided over the whole tensor on every rank."""
    dtype = torch.float64
    ref, ref_opt = _reference("Prodigy", dtype, zero_start=True)
    model = _fsdp_model(dtype, mesh)
    with torch.no_grad():
        model[2].bias.zero_()
    opt = _make("Prodigy", model.parameters())
    _train(model, opt, dtype, STEPS)
    out["prodigy_zero_start"] = dict(
        diff=_max_diff(model.parameters(), ref),
        p0_dim=opt.state[model[2].bias]["p0"].dim(),
        ref_p0_dim=ref_opt.state[next(iter(ref_opt.param_groups[0]["params"][3:]))]["p0"].dim(),
    )


def _scenario_zero(rank, out):
    """Prodigy inside ZeroRedundancyOptimizer: 4 parameters (each rank holds some), and one
    parameter (rank 1 holds none, and still takes part in every reduction)."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    import descend.optim as D

    dtype = torch.float64
    kwargs = CASES["Prodigy"][1]
    ref, ref_opt = _reference("Prodigy", dtype)
    model = _model(dtype)
    zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=D.Prodigy, **kwargs)
    _train(model, zero, dtype, STEPS)
    out["zero"] = dict(
        diff=_max_diff(model.parameters(), ref),
        d=(zero.optim.param_groups[0]["d"], ref_opt.param_groups[0]["d"]),
        local=sum(len(g["params"]) for g in zero.optim.param_groups),
        group=zero.optim.process_group is zero.process_group,
    )

    try:  # Newton's one solve over the whole model: refused on a share of it
        ZeroRedundancyOptimizer(_model(dtype).parameters(), optimizer_class=D.Newton)
        out["zero_newton"] = None
    except ValueError as exc:
        out["zero_newton"] = str(exc)

    def single():
        torch.manual_seed(0)
        return torch.nn.Linear(6, 3, bias=False).to(dtype)

    def train(model, opt):
        for step in range(STEPS):
            opt.zero_grad()
            x, y = _batch(dtype, step)
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    alone = single()
    alone_opt = D.Prodigy(alone.parameters(), **kwargs)
    train(alone, alone_opt)
    model = single()
    zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=D.Prodigy, **kwargs)
    train(model, zero)
    group = zero.optim.param_groups[0]
    out["zero_empty"] = dict(
        diff=float((model.weight.detach() - alone.weight.detach()).abs().max()),
        local=len(group["params"]),
        estimate=(group["d"], group["k"]),
        alone=(alone_opt.param_groups[0]["d"], alone_opt.param_groups[0]["k"]),
    )


def _scenario_dcp(rank, out, mesh, tmp):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    dtype = torch.float64
    results = {}
    for name in DCP_CASES:
        try:
            model = _fsdp_model(dtype, mesh)
            opt = _make(name, model.parameters())
            _train(model, opt, dtype, 2)
            path = os.path.join(tmp, name)
            sd = {
                "model": get_model_state_dict(model),
                "optim": get_optimizer_state_dict(model, opt),
            }
            dcp.save(sd, checkpoint_id=path)
            _train(model, opt, dtype, 1, first=2)
            expected = [_full(p.detach()).clone() for p in model.parameters()]
            loaded = _fsdp_model(dtype, mesh)
            opt_l = _make(name, loaded.parameters())
            sd = {
                "model": get_model_state_dict(loaded),
                "optim": get_optimizer_state_dict(loaded, opt_l),
            }
            dcp.load(sd, checkpoint_id=path)  # no allow_partial_load
            set_model_state_dict(loaded, sd["model"])
            set_optimizer_state_dict(loaded, opt_l, sd["optim"])
            _train(loaded, opt_l, dtype, 1, first=2)
            results[name] = dict(diff=_max_diff(loaded.parameters(), expected))
        except BaseException:  # noqa: BLE001 - DCP's CheckpointException is one; reported
            results[name] = dict(error=traceback.format_exc(limit=8))
    out["dcp"] = results


def _worker(rank, port, outdir):
    run_scenarios(
        rank,
        port,
        outdir,
        lambda out, mesh: (
            ("fsdp", lambda: _scenario_fsdp(rank, out, mesh)),
            ("half", lambda: _scenario_half_batches(rank, out, mesh)),
            ("prodigy_zero_start", lambda: _scenario_prodigy_zero_start(rank, out, mesh)),
            ("zero", lambda: _scenario_zero(rank, out)),
            ("dcp", lambda: _scenario_dcp(rank, out, mesh, outdir)),
        ),
    )


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(_worker, str(tmp_path_factory.mktemp("dist_matrix")), DEADLINE_S)


# what each optimizer keeps for the (8, 6) weight: sharded like it, or whole on every rank
LAYOUTS = {
    "Muon": {"momentum_buffer": "sharded"},
    "SOAP": {"exp_avg": "sharded", "exp_avg_sq": "sharded", "GG": "list", "Q": "list"},
    "Prodigy": {"s": "sharded", "p0": "sharded", "exp_avg": "sharded", "exp_avg_sq": "sharded"},
    "LAMB": {"exp_avg": "sharded", "exp_avg_sq": "sharded"},
    "LARS": {"momentum_buffer": "sharded"},
    "Adafactor": {"row_var": "whole", "col_var": "whole"},
    "Adam": {"exp_avg": "sharded", "exp_avg_sq": "sharded"},
}


# the collectives of one optimizer step (2 matrices, 2 vectors): one all-gather per matrix
# stepped whole (Adafactor: per tensor), one all-reduce of every rank's sums or norms;
# the cautious mask's Σφ is DTensor's own reduction, one per tensor
COMMS = {
    "Muon": dict(all_gather=2, all_reduce=0),
    "SOAP": dict(all_gather=2, all_reduce=0),
    "Prodigy": dict(all_gather=0, all_reduce=1),
    "LAMB": dict(all_gather=0, all_reduce=1),
    "LARS": dict(all_gather=0, all_reduce=1),
    "Adafactor": dict(all_gather=4, all_reduce=0),
    "Adam": dict(all_gather=0, all_reduce=4),
}


@pytest.mark.parametrize("dname", list(DTYPES))
@pytest.mark.parametrize("name", list(CASES))
def test_fsdp2_equals_one_process(ranks, name, dname):
    ranks = _ok(ranks, "fsdp")
    for out in ranks:
        result = out["fsdp"][(name, dname)]
        assert result["diff"] <= TOL[dname]
        assert result["moved"] > 1e-3  # the parameters moved: the comparison means something
        # none of these has a fast kernel: the chain ran, on every group
        assert all(p.startswith("default: ") for p in result["path"].values())
        assert result["layout"] == LAYOUTS[CASES[name][0]]
        if dname == "fp64":
            assert result["comms"] == COMMS[CASES[name][0]]
    if name == "SOAP":
        a, b = (out["fsdp"][(name, dname)] for out in ranks)
        assert set(a["whole_layout"]) == {"whole"}
        assert len(a["whole"]) == 4 and all(map(torch.equal, a["whole"], b["whole"]))
        assert a["whole_diff"] <= TOL[dname]
    if name == "Prodigy":
        (d0, ref), (d1, _) = (out["fsdp"][(name, dname)]["d"] for out in ranks)
        assert d0 == d1 and d0 == pytest.approx(ref, rel=TOL[dname]) and d0 > 1e-3  # d grew


@pytest.mark.parametrize("name", HALF_CASES)
def test_fsdp2_on_half_batches_equals_one_process(ranks, name):
    ranks = _ok(ranks, "half")
    for out in ranks:
        assert out["half"][name] <= 1e-12


def test_fsdp2_prodigy_zero_start_is_decided_over_the_whole_tensor(ranks):
    ranks = _ok(ranks, "prodigy_zero_start")
    for out in ranks:
        result = out["prodigy_zero_start"]
        assert result["diff"] <= 1e-12
        assert result["p0_dim"] == result["ref_p0_dim"] == 0


def test_zero_prodigy_equals_one_process(ranks):
    ranks = _ok(ranks, "zero")
    for out in ranks:
        zero = out["zero"]
        assert zero["group"] and zero["local"] > 0 and zero["diff"] <= 1e-12
        assert zero["d"][0] == pytest.approx(zero["d"][1], rel=1e-12)
        empty = out["zero_empty"]
        assert empty["diff"] <= 1e-12
        # the rank without a parameter took the same d (and step count) as the other
        assert empty["estimate"][0] == pytest.approx(empty["alone"][0], rel=1e-12)
        assert empty["estimate"][1] == empty["alone"][1] == STEPS
    assert sorted(out["zero_empty"]["local"] for out in ranks) == [0, 1]
    for out in ranks:
        assert "the Hessian is not assembled across processes" in (out["zero_newton"] or "")
    assert ranks[0]["zero"]["d"][0] == ranks[1]["zero"]["d"][0]


@pytest.mark.parametrize("name", DCP_CASES)
def test_dcp_save_and_load_of_the_sharded_state(ranks, name):
    ranks = _ok(ranks, "dcp")
    for out in ranks:
        result = out["dcp"][name]
        assert "error" not in result, result.get("error")
        assert result["diff"] <= 1e-12
