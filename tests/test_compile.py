"""descend's optimizers inside ``torch.compile``, measured against torch's own AdamW.

Each run builds a small model, an optimizer with a tensor learning rate and a ``LambdaLR``
that changes it every step, and compiles either ``opt.step`` or the whole train step
(zero_grad, forward, backward, step). Graph breaks and unique graphs are read from
``torch._dynamo.utils.counters`` after the run; unique graphs are also read after every step,
so a recompile at any step shows. Break and graph counts use the ``"eager"`` backend (dynamo's
capture is the same whatever the backend); one test compiles with inductor for the numbers:
torch's compiled AdamW is measured against its eager run, and descend's compiled step must
stay within that distance of its own eager run.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import descend.optim as D
from conftest import require_kernels
from descend.optim.fast import last_path

STEPS = 6


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _batches(steps: int) -> list:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)) for _ in range(steps)
    ]


def _run(make, mode: str | None, backend: str = "eager", steps: int = STEPS) -> dict:
    """Train ``steps`` steps; ``mode``: ``"step"`` (compiled ``opt.step``), ``"train"``
    (compiled train step) or None (eager)."""
    torch._dynamo.reset()  # the step's code object is shared by every optimizer instance
    counters.clear()
    model = _model()
    opt = make(model.parameters(), torch.tensor(0.01))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.8**s)

    def loss_of(x, y):
        return torch.nn.functional.mse_loss(model(x), y)

    if mode == "train":

        @torch.compile(backend=backend)
        def train(x, y):
            opt.zero_grad()
            loss = loss_of(x, y)
            loss.backward()
            opt.step()
            return loss

    else:
        step = opt.step if mode is None else torch.compile(opt.step, backend=backend)

        def train(x, y):
            opt.zero_grad()
            loss_of(x, y).backward()
            step()

    graphs = []
    for x, y in _batches(steps):
        train(x, y)
        sched.step()
        graphs.append(counters["stats"]["unique_graphs"])
    return {
        "breaks": sum(counters["graph_break"].values()),
        "graphs": graphs[-1],
        "per_step": graphs,
        "params": [p.detach().clone() for p in model.parameters()],
        "opt": opt,
    }


def _torch_adamw(params, lr):
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.1)


def _rel(a: list, b: list) -> float:
    return max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def torch_counts() -> dict:
    return {mode: _run(_torch_adamw, mode) for mode in ("step", "train")}


@pytest.mark.parametrize("mode", ["step", "train"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "chain"])
def test_adamw_breaks_and_graphs_at_most_torchs(torch_counts, mode, fused):
    if fused:
        require_kernels()
    ours = _run(lambda ps, lr: D.AdamW(ps, lr=lr, weight_decay=0.1, fused=fused), mode)
    theirs = torch_counts[mode]
    print(
        f"{mode}: torch AdamW {theirs['breaks']} breaks / {theirs['graphs']} graphs, "
        f"descend AdamW(fused={fused}) {ours['breaks']} / {ours['graphs']}"
    )
    assert ours["breaks"] <= theirs["breaks"]
    assert ours["graphs"] <= theirs["graphs"]
    assert ours["per_step"][0] == ours["per_step"][-1]  # no recompile, lr changing each step
    assert last_path(ours["opt"]) == {0: "fast" if fused else "default: fused=False"}
    # the scheduler's lr reached every compiled step: the eager run is matched bitwise
    eager = _run(lambda ps, lr: D.AdamW(ps, lr=lr, weight_decay=0.1, fused=fused), None)
    assert all(torch.equal(a, b) for a, b in zip(ours["params"], eager["params"], strict=True))


CASES = {
    "sgd-nesterov": lambda ps, lr, f: D.SGD(ps, lr=lr, momentum=0.9, nesterov=True, fused=f),
    "sgd-dampening": lambda ps, lr, f: D.SGD(ps, lr=lr, momentum=0.9, dampening=0.5, fused=f),
    "adagrad": lambda ps, lr, f: D.Adagrad(ps, lr=lr, lr_decay=0.01, fused=f),
    "rmsprop-centered": lambda ps, lr, f: D.RMSprop(
        ps, lr=lr, centered=True, momentum=0.9, fused=f
    ),
    "amsgrad-clipped": lambda ps, lr, f: D.Adam(
        ps, lr=lr, amsgrad=True, max_grad_norm=0.05, weight_decay=0.01, fused=f
    ),
    "adam-keras": lambda ps, lr, f: D.Adam(ps, lr=lr, convention="keras", fused=f),
    "nadam": lambda ps, lr, f: D.NAdam(ps, lr=lr, weight_decay=0.01, fused=f),
    "lion": lambda ps, lr, f: D.Lion(ps, lr=lr, weight_decay=0.1, max_grad_norm=0.05, fused=f),
    # RAdam, Adamax, ADOPT (issue #14)
    "radam": lambda ps, lr, f: D.RAdam(
        ps, lr=lr, weight_decay=0.1, decoupled_weight_decay=True, fused=f
    ),
    "adamax": lambda ps, lr, f: D.Adamax(ps, lr=lr, weight_decay=0.01, fused=f),
    "adopt": lambda ps, lr, f: D.ADOPT(
        ps, lr=lr, weight_decay=0.1, decoupled_weight_decay=True, fused=f
    ),
    # Adadelta, Rprop, ASGD
    "adadelta": lambda ps, lr, f: D.Adadelta(ps, lr=lr, weight_decay=0.01, fused=f),
    "rprop": lambda ps, lr, f: D.Rprop(ps, lr=lr, maximize=True, fused=f),
    "asgd": lambda ps, lr, f: D.ASGD(ps, lr=lr, lambd=0.01, t0=2, weight_decay=0.01, fused=f),
    # cautious mask (issue #14, i14kc): the same ops, Args.cautious set by the plan
    "adamw-cautious": lambda ps, lr, f: D.AdamW(
        ps, lr=lr, weight_decay=0.1, cautious=True, fused=f
    ),
    "nesterov-cautious": lambda ps, lr, f: D.SGD(
        ps, lr=lr, momentum=0.9, nesterov=True, cautious=True, fused=f
    ),
}


def _ademamix(ps, lr, fused=True):
    return D.AdEMAMix(ps, lr=lr, weight_decay=0.1, alpha_warmup=3, beta3_warmup=4, fused=fused)


def test_ademamix_fast_path_compiles_as_one_op(torch_counts):
    """AdEMAMix's kernel under torch.compile (issue #14): one op per group, no recompile as
    the warm-ups advance (their coefficients are computed in the op, from the step tensors),
    bitwise the eager fast path. (Its chain is not in ``CASES``: the warm-ups branch on the
    step, a graph break each.)"""
    require_kernels()
    ours, eager = _run(_ademamix, "step"), _run(_ademamix, None)
    assert ours["breaks"] <= torch_counts["step"]["breaks"]
    assert ours["per_step"][0] == ours["per_step"][-1] and ours["graphs"] <= 1
    assert last_path(ours["opt"]) == {0: "fast"}
    assert all(torch.equal(a, b) for a, b in zip(ours["params"], eager["params"], strict=True))
    ours_sd, eager_sd = ours["opt"].state_dict(), eager["opt"].state_dict()
    for i, st in eager_sd["state"].items():
        assert all(torch.equal(ours_sd["state"][i][k], v) for k, v in st.items())


# Families whose chain, not their kernel, breaks the graph (their fast-path op has none):
# ADOPT's first step is a Python branch on each tensor's step (t <= 1), a graph break per
# parameter; ASGD's chain reads η and μ as Python numbers (.item(), as torch's single-tensor
# ASGD does).
FUSED_ONLY = {"adopt", "asgd"}


@pytest.mark.parametrize(
    "name,fused",
    [(n, f) for n in CASES for f in (True, False) if f or n not in FUSED_ONLY],
    ids=[
        f"{n}-{'fused' if f else 'chain'}"
        for n in CASES
        for f in (True, False)
        if f or n not in FUSED_ONLY
    ],
)
def test_every_family_compiles_without_per_step_recompiles(torch_counts, name, fused):
    if fused:
        require_kernels()
    ours = _run(lambda ps, lr: CASES[name](ps, lr, fused), "step")
    eager = _run(lambda ps, lr: CASES[name](ps, lr, fused), None)
    assert ours["breaks"] <= torch_counts["step"]["breaks"]
    # modern momentum's first step creates its buffer (v₁ = g) and traces apart, as torch's
    # compiled SGD does: one recompile at the second step, none after
    assert ours["per_step"][1] == ours["per_step"][-1], ours["per_step"]
    assert ours["graphs"] <= 2
    assert last_path(ours["opt"]) == {0: "fast" if fused else "default: fused=False"}
    ours_sd, eager_sd = ours["opt"].state_dict(), eager["opt"].state_dict()
    assert ours_sd["state"].keys() == eager_sd["state"].keys()
    for i, st in eager_sd["state"].items():
        assert ours_sd["state"][i].keys() == st.keys()
    if fused:  # the op runs the eager step's kernel on the same numbers: bitwise
        assert all(torch.equal(a, b) for a, b in zip(ours["params"], eager["params"]))
        for i, st in eager_sd["state"].items():
            assert all(torch.equal(ours_sd["state"][i][k], v) for k, v in st.items())
    else:  # float64 tensor coefficients for the eager chain's Python floats
        assert _rel(ours["params"], eager["params"]) <= 1e-6


@pytest.mark.parametrize("cls", [D.ScheduleFreeAdamW, D.ScheduleFreeSGD], ids=lambda c: c.__name__)
def test_schedule_free_compiles_on_the_chain(cls):
    """Schedule-Free's averaging bookkeeping (γ_max, Σw) is Python numbers in the state, which
    a graph cannot carry into an op: a compiled step runs the chain, saying why, and stays
    with the eager fast path; ``fused=True`` refuses it naming the reason."""
    require_kernels()

    def make(ps, lr, fused=None):
        return cls(ps, lr=lr, weight_decay=0.1, warmup_steps=3, fused=fused)

    ours, eager = _run(make, "step", steps=3), _run(make, None, steps=3)
    assert last_path(eager["opt"]) == {0: "fast"}
    (path,) = last_path(ours["opt"]).values()
    assert path.startswith("default: ") and "under torch.compile" in path
    assert _rel(ours["params"], eager["params"]) <= 1e-6
    with pytest.raises(Exception, match=r"fused=True.*under torch\.compile"):
        _run(lambda ps, lr: make(ps, lr, fused=True), "step", steps=1)


def test_inductor_step_is_as_close_to_eager_as_torchs():
    require_kernels()
    theirs = _rel(
        _run(_torch_adamw, "step", "inductor")["params"], _run(_torch_adamw, None)["params"]
    )
    for fused in (None, False):

        def make(ps, lr, fused=fused):
            return D.AdamW(ps, lr=lr, weight_decay=0.1, fused=fused)

        ours = _rel(_run(make, "step", "inductor")["params"], _run(make, None)["params"])
        print(f"inductor vs eager: torch AdamW {theirs:.3g}, descend fused={fused} {ours:.3g}")
        assert ours <= theirs


def test_nonfinite_skip_under_compile_decides_eagerly():
    model = _model()
    opt = D.Adam(model.parameters(), lr=torch.tensor(0.01), nonfinite="skip")
    torch._dynamo.reset()
    step = torch.compile(opt.step, backend="eager")
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    step()
    assert opt.skipped_steps == 1
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert all(not opt.state.get(p) for p in model.parameters())  # no state was created


def _ready(opt) -> tuple:
    """One group made ready for its op, as a traced step's ``_init_group`` does."""
    group = opt.param_groups[0]
    lists = [[] for _ in range(6)]
    how = opt._init_group(0, group, *lists)
    assert how[0] == "fast"
    _, family, token, keys, ncols, fresh, _ = how
    assert fresh == ()  # no modern-momentum buffer to make here
    params, grads, *columns = lists
    return family, token, params, grads, columns[:ncols], [group[k] for k in keys]


def test_op_schema_names_what_each_kernel_writes():
    require_kernels()
    schema = str(torch.ops.descend.adam.default._schema)
    assert schema == (
        "descend::adam(int plan, Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avg, "
        "Tensor(c!)[] exp_avg_sq, Tensor(d!)[] max_exp_avg_sq, Tensor(e!)[] step, "
        "Tensor[] hyper, int[] fresh) -> ()"
    )
    written = {
        family: [
            a.name
            for a in getattr(torch.ops.descend, family).default._schema.arguments
            if a.alias_info is not None and a.alias_info.is_write
        ]
        for family in (
            *("sgd", "adagrad", "rmsprop", "nadam", "lion", "ademamix"),
            *("radam", "adamax", "adopt", "adadelta", "rprop", "asgd"),
        )
    }
    assert written == {
        "sgd": ["params", "momentum_buffer", "step"],
        "adagrad": ["params", "sum", "step"],
        "rmsprop": ["params", "square_avg", "grad_avg", "momentum_buffer", "step"],
        "nadam": ["params", "exp_avg", "exp_avg_sq", "step", "mu_product"],
        "lion": ["params", "exp_avg", "step"],
        "ademamix": ["params", "exp_avg_fast", "exp_avg_slow", "exp_avg_sq", "step"],
        "radam": ["params", "exp_avg", "exp_avg_sq", "step"],
        "adamax": ["params", "exp_avg", "exp_inf", "step"],
        "adopt": ["params", "exp_avg", "exp_avg_sq", "step"],
        "adadelta": ["params", "square_avg", "acc_delta", "step"],
        "rprop": ["params", "prev", "step_size", "step"],
        "asgd": ["params", "ax", "step", "eta", "mu"],
    }


def test_op_equals_the_eager_step_and_checks_every_call():
    require_kernels()
    model, twin = _model(), _model()
    opt = D.AdamW(model.parameters(), lr=torch.tensor(0.01), amsgrad=True)
    ref = D.AdamW(twin.parameters(), lr=torch.tensor(0.01), amsgrad=True)
    ((x, y),) = _batches(1)
    for m in (model, twin):
        torch.nn.functional.mse_loss(m(x), y).backward()
    family, token, params, grads, columns, hyper = _ready(opt)
    torch.library.opcheck(
        getattr(torch.ops.descend, family).default,
        (token, params, grads, *columns, hyper, []),
        test_utils=("test_schema", "test_faketensor"),
    )
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        p.data.copy_(q.data)  # opcheck ran the op: start both from the same point
    for st in opt.state.values():  # and from a fresh state (step 0, zero moments)
        for v in st.values():
            v.zero_()
    getattr(torch.ops.descend, family)(token, params, grads, *columns, hyper, [])
    ref.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    assert all(  # the state columns are the optimizer's own tensors, updated in place
        torch.equal(st["exp_avg"], ref.state[q]["exp_avg"])
        for st, q in zip(opt.state.values(), twin.parameters(), strict=True)
    )
    # a state tensor swapped for a non-contiguous one is refused before any pointer is used
    bad = [c.clone() for c in columns[0]]
    bad[0] = torch.zeros(bad[0].shape[::-1]).t()  # the first layer's (8, 4) weight
    before = [p.detach().clone() for p in params]
    with pytest.raises(RuntimeError, match="non-contiguous"):
        getattr(torch.ops.descend, family)(token, params, grads, bad, *columns[1:], hyper, [])
    assert all(torch.equal(a, p) for a, p in zip(before, params, strict=True))


def test_complex_parameters_take_the_eager_step_under_compile():
    """Complex parameters step as their real views (as torch's): the traced step calls the
    eager one for them, and the result is the eager run's, bitwise."""
    runs = []
    for compiled in (True, False):
        torch.manual_seed(0)
        z = torch.randn(3, 2, dtype=torch.complex64, requires_grad=True)
        opt = D.Adam([z], lr=torch.tensor(0.01))
        torch._dynamo.reset()
        step = torch.compile(opt.step, backend="eager") if compiled else opt.step
        for i in range(3):
            opt.zero_grad()
            (z * (i + 1)).abs().pow(2).sum().backward()
            step()
        runs.append((z.detach().clone(), opt.state[z]["exp_avg"].clone()))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][1].is_complex()
