"""The monitor's sampled step: the gradient hooks hold the first backward's gradient (no copy)
and clipping cannot change it; ``descend_monitor_step_read`` (sums in four float64 lanes, the
gather) against a float64 reference written here and against torch's path; θ before the step
copied by ``descend_monitor_snapshot``; every refusal writes nothing."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from conftest import require_kernels
from descend import optim
from descend.monitor import Monitor, fused


@pytest.fixture(autouse=True)
def _kernels():
    require_kernels()


def _reference_sums(params, grads, moms, before, preclip):
    """The nine sums of monitor.cpp per parameter, by hand in float64: non-finite entries of
    g counted, then taken as 0; u = θ_before − θ as the float32 difference (as torch)."""
    rows = []
    for p, g, m, b, q in zip(params, grads, moms, before, preclip):
        p, g, b, q = (t.detach().reshape(-1) for t in (p, g, b, q))
        finite = torch.isfinite(g)
        g = torch.where(finite, g, torch.zeros(()))
        u = b - p  # float32
        d = lambda t: t.double()  # noqa: E731
        m2 = mg = 0.0
        if m is not None:
            m = m.reshape(-1)
            m2, mg = float((d(m) * d(m)).sum()), float((d(m) * d(g)).sum())
        rows.append(
            [
                float((d(b) ** 2).sum()),
                float((d(q) ** 2).sum()),
                float((d(g) ** 2).sum()),
                float((d(u) ** 2).sum()),
                m2,
                mg,
                float((u * g < 0).sum()),
                float((g != 0).sum()),
                float((~finite).sum()),
            ]
        )
    return np.array(rows)


def _case(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randn(n, generator=gen)  # noqa: E731
    params = [rand(n) for n in lengths]
    grads = [rand(n) for n in lengths]
    if lengths[0] >= 7:  # non-finite gradient entries, in the lanes and the tail
        grads[0][[0, 3, 6]] = torch.tensor([math.inf, math.nan, -math.inf])
    grads[-1][: lengths[-1] // 2] = 0.0  # zeros (not counted as nonzero)
    moms = [rand(n) if j % 2 == 0 else None for j, n in enumerate(lengths)]
    before = [p + 1e-3 * rand(p.numel()) for p in params]
    preclip = [2 * torch.where(torch.isfinite(g), g, 0.0) for g in grads]
    return params, grads, moms, before, preclip


def _tensors(params, grads, moms, before, preclip, sources, split):
    out = [*params, *grads, *(m for m in moms if m is not None), torch.cat(before)]
    out += preclip if split else [torch.cat(preclip)]
    for column in sources:
        out += [t for t in column if t is not None]
    return out


@pytest.mark.parametrize("lengths", [[1], [3, 0, 4, 5], [7, 8, 9, 10, 1031]])
def test_step_read_sums_and_gather_equal_the_float64_reference(lengths):
    """Products of float32 values are exact in float64, so the lanes differ from the
    sequential float64 reference only by the order of the additions: at most ~n·2⁻⁵³ relative
    (1e-13 allowed; measured 1.0e-15 at n = 1,031, where float32 accumulation would be off
    by ~1e-7); the counts and the gathered entries are exact. The flat and split pre-clip
    layouts are the same arithmetic: bit for bit."""
    params, grads, moms, before, preclip = _case(lengths)
    total = sum(lengths)
    state = [[torch.randn(n) for n in lengths], [t if j else None for j, t in enumerate(params)]]
    index = np.array(sorted({0, total - 1, total // 2, total // 3}), np.int64)
    lib = fused.step_library()
    got = []
    for split in (False, True):
        reader = fused.Reader(
            lengths,
            [m is not None for m in moms],
            [[t is not None for t in column] for column in state],
            index,
            split=split,
        )
        out = reader(lib, _tensors(params, grads, moms, before, preclip, state, split))
        assert out is not None
        got.append(out)
    (sums, gathered), (sums_split, gathered_split) = got
    assert np.array_equal(sums, sums_split)
    assert np.array_equal(gathered, gathered_split, equal_nan=True)
    want = _reference_sums(params, grads, moms, before, preclip)
    np.testing.assert_array_equal(sums[:, 6:], want[:, 6:])  # counts
    np.testing.assert_allclose(sums[:, :6], want[:, :6], rtol=1e-13, atol=0)
    nan = [torch.full((n,), math.nan) for n in lengths]
    flat = [torch.cat([t if t is not None else v for t, v in zip(c, nan)]) for c in state]
    for k, column in enumerate(flat):
        np.testing.assert_array_equal(gathered[k], column.numpy()[index])


def test_step_read_refuses_without_writing_and_keeps_held_outputs():
    lengths = [6, 4]
    params, grads, moms, before, preclip = _case(lengths)
    lib = fused.step_library()
    reader = fused.Reader(lengths, [True, False], [], np.array([0, 9]), split=True)
    good = _tensors(params, grads, moms, before, preclip, [], True)
    first = reader(lib, good)
    kept = [a.copy() for a in first]
    # held results are never handed out again: a second call writes into other arrays
    params2, grads2, moms2, before2, preclip2 = _case(lengths, seed=1)
    second = reader(lib, _tensors(params2, grads2, moms2, before2, preclip2, [], True))
    assert second[0] is not first[0]
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)
    del second
    # the pair no one holds any more is reused; a refused call writes nothing into it
    out = reader._outputs[0]
    out[0].fill(-7.0)
    # good: θ₀ θ₁ g₀ g₁ m₀ θ_before (flat) preclip₀ preclip₁
    bad_cases = [
        good[:6] + [preclip[0][:5]] + good[7:],  # a pre-clip gradient of the wrong size
        good[:5] + [torch.zeros(10, dtype=torch.float64)] + good[6:],  # θ before: float64
        good[:6] + [torch.randn(6, 2)[:, 0]] + good[7:],  # non-contiguous (stride 2)
        good[:-1],  # one tensor short
        [good[0].as_subclass(_Sub)] + good[1:],  # a subclass never reaches a pointer
    ]
    for tensors in bad_cases:
        assert reader(lib, tensors) is None
        assert (out[0] == -7.0).all()
    # a coordinate past the end: refused before the sums are written
    far = fused.Reader(lengths, [True, False], [], np.array([0, 10]), split=True)
    spare = far._free_outputs()  # the pair the call will take (no one holds it)
    spare[0].fill(-7.0)
    assert far(lib, good) is None
    assert (spare[0] == -7.0).all()


class _Sub(torch.Tensor):
    pass


def test_snapshot_copies_theta_and_refuses_without_writing():
    lib = fused.step_library()
    params = [torch.randn(5), torch.randn(2, 3), torch.zeros(0)]
    snap = fused.Snapshot([5, 6, 0])
    row = torch.full((11,), -1.0)
    assert snap(lib, [*params, row])
    assert torch.equal(row, torch.cat([p.reshape(-1) for p in params]))
    row.fill_(-1.0)
    for tensors in (
        [params[0], params[1].double(), params[2], row],  # float64
        [params[0], params[1].t(), params[2], row],  # non-contiguous
        [params[0].as_subclass(_Sub), params[1], params[2], row],  # subclass
        [params[0], params[1], params[2], row[:10]],  # a row of the wrong size
        [params[0], params[1], row],  # one short
    ):
        assert not snap(lib, tensors)
        assert (row == -1.0).all()


def _twins(make_opt, zero_to_none, steps, clip, micro=1, path=None):
    """The same small model trained twice (one monitored with ``fused=path``), clipping with
    clip_grad_norm_; the test's own pre-clip norms (from p.grad before clipping). With one
    backward pass per step it checks the held gradients themselves: not p.grad's memory,
    and unchanged by the clipping."""
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    watched = copy.deepcopy(plain)
    gen = torch.Generator().manual_seed(0)
    data = [
        (torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen))
        for _ in range(steps * micro)
    ]
    out = {}
    for model in (plain, watched):
        opt = make_opt(model.parameters())
        mon = Monitor(opt, model, every=1, fused=path) if model is watched else None
        norms = []
        for s in range(steps):
            opt.zero_grad(set_to_none=zero_to_none)
            for i in range(micro):
                x, y = data[s * micro + i]
                (torch.nn.functional.mse_loss(model(x), y) / micro).backward()
            norms.append(float(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm()))
            held = {}
            if mon is not None and micro == 1:
                held = {id(p): mon._grads[id(p)] for p in model.parameters()}
                for p in model.parameters():
                    assert held[id(p)].data_ptr() != p.grad.data_ptr()
                    assert torch.equal(held[id(p)], p.grad)
                held = {k: (g, g.clone()) for k, g in held.items()}
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for g, was in held.values():
                assert torch.equal(g, was)  # clipping p.grad left the held gradient alone
            opt.step()
        out[model is watched] = (model, norms, mon)
    return out


@pytest.mark.parametrize("fused_path", [True, False])
@pytest.mark.parametrize("zero_to_none", [True, False])
def test_held_gradient_is_the_pre_clip_one_and_training_is_unchanged(fused_path, zero_to_none):
    """The hook holds backward's gradient; AccumulateGrad then copies it into p.grad (or adds
    it into the p.grad zero_grad(set_to_none=False) left), so clip_grad_norm_ scaling p.grad
    in place leaves it as it was: grad_norm_preclip is the norm the test read before
    clipping, on both paths, and the monitored weights are the plain run's bit for bit."""
    make = lambda p: optim.Adam(p, lr=1e-2)  # noqa: E731
    runs = _twins(make, zero_to_none, steps=4, clip=0.05, path=fused_path)
    (plain, _, _), (watched, norms, mon) = runs[False], runs[True]
    for a, b in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(a, b)
    rows = [r for r in mon.rows if "opt/grad_norm_preclip" in r]
    assert len(rows) == 4
    assert mon.last_path == ("fused" if fused_path else "torch")
    for row, norm in zip(rows, norms):
        assert row["opt/grad_norm_preclip"] == pytest.approx(norm, rel=1e-6)
        assert row["opt/clipped"] == 1.0
        assert row["opt/grad_norm"] == pytest.approx(0.05, rel=1e-5)


def test_held_then_accumulated_gradients_on_both_paths():
    """Two backward passes per step: the first pass's gradient is held, the second copies it
    into the pre-clip row and adds its own (and keeps both passes' norms); the kernels' rows
    are the torch path's."""
    rows = {}
    for path in (True, False):
        make = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)  # noqa: E731
        runs = _twins(make, True, steps=3, clip=0.05, micro=2, path=path)
        _, norms, mon = runs[True]
        assert mon.last_path == ("fused" if path else "torch")
        rows[path] = [r for r in mon.rows if "opt/micro_batches" in r]
        for row, norm in zip(rows[path], norms):
            assert row["opt/micro_batches"] == 2
            assert row["opt/grad_norm_preclip"] == pytest.approx(norm, rel=1e-6)
            assert "opt/gns_trace" in row
    for a, b in zip(rows[True], rows[False]):
        assert a["opt/gns_trace"] == pytest.approx(b["opt/gns_trace"], rel=1e-6)


def test_step_counts_read_by_the_kernels_must_agree():
    """The prebuilt reader reads a group's step counts (one-element float32 tensors) in the
    native call and gives up when they differ (the general read then leaves the group's
    rates out, as it does for differing steps); its bias correction is _v_bias_correction's."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    mon = Monitor(opt, net, every=1, fused=True)

    def step():
        opt.zero_grad()
        net(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()

    for _ in range(3):
        step()
    specs = mon._reader[1]
    assert [spec[-1] for spec in specs] == [True]  # read natively
    assert mon._reader[2].step_values.tolist() == [3.0, 3.0]
    assert mon.rows[-1]["opt/group0/v_bias_correction"] == pytest.approx(1 / (1 - 0.999**3))
    assert mon._v_bias_correction(0) == pytest.approx(1 / (1 - 0.999**3))
    opt.state[net.bias]["step"] += 1.0  # the counts of one group disagree
    layout = mon._layout
    assert mon._fast_read(layout) is None
    step()
    assert mon.last_path == "fused"  # the general read, which rebuilt no reader for it
    assert mon._reader[1] is None
    assert "opt/eff_lr_p50" not in mon.rows[-1]


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
@pytest.mark.parametrize("fused_path", [None, False])
def test_sparse_gradients_are_read_densely(fused_path):
    """Embedding(sparse=True): the hook copies the sparse gradient densely into the pre-clip
    row and the torch path reads p.grad densely (before, both raised inside backward/step);
    the kernels do not take it and say so."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    mon = Monitor(opt, emb, every=1, fused=fused_path)
    for ids in ([1, 2, 2], [3, 4, 1]):
        opt.zero_grad()
        (emb(torch.tensor(ids)) * torch.arange(1.0, 4.0)).sum().backward()
        norm = float(emb.weight.grad.to_dense().norm())
        opt.step()
        row = mon.rows[-1]
        assert row["opt/grad_norm_preclip"] == pytest.approx(norm, rel=1e-6)
        assert row["opt/grad_norm"] == pytest.approx(norm, rel=1e-6)
    assert mon.last_path.startswith("torch")
    if fused_path is None:
        assert mon.last_path.startswith("torch: a tensor the kernels do not take")


def test_hook_dictionary_is_reused_only_while_it_holds_the_monitors_hook_alone():
    from descend.monitor.core import _GradHook

    p = torch.nn.Parameter(torch.randn(3))
    seen = []
    hook = _GradHook(p, seen.append)
    hook.arm()
    first = p._backward_hooks
    assert list(first.values()) == [seen.append]
    hook.remove()
    assert p._backward_hooks is None  # no per-backward call between sampled steps
    hook.arm()
    assert p._backward_hooks is first  # the same dictionary, fn alone in it
    (2 * p).sum().backward()
    assert len(seen) == 1 and torch.equal(seen[0], torch.full((3,), 2.0))
    theirs = p.register_hook(lambda g: None)  # a user's hook lands in our dictionary
    hook.remove()
    assert list(p._backward_hooks) == [theirs.id]  # theirs stays, ours is out
    hook.arm()
    assert list(p._backward_hooks) == [theirs.id, hook.key]
    assert p._backward_hooks is first  # torch's dictionary now: ours goes in and out of it
    hook.remove()
    theirs.remove()
    assert not p._backward_hooks
    (2 * p).sum().backward()
    assert len(seen) == 1


def test_layout_holds_the_groups_exactly_when_it_matches_their_parameters():
    from descend.monitor import flat

    a, b, c = (torch.nn.Parameter(torch.randn(n)) for n in (4, 3, 2))
    opt = torch.optim.SGD([{"params": [a, b]}, {"params": [c]}], lr=0.1)

    def params():
        return [
            (gi, p) for gi, g in enumerate(opt.param_groups) for p in g["params"] if p.requires_grad
        ]

    layout = flat.Layout(params(), False)
    changes = [
        lambda: None,
        lambda: b.requires_grad_(False),
        lambda: setattr(b, "data", torch.randn(3, 1)),  # another shape, the same numel
        lambda: setattr(c, "data", torch.randn(2).double()),
        lambda: opt.param_groups[1]["params"].append(torch.nn.Parameter(torch.randn(1))),
        lambda: opt.param_groups[0]["params"].reverse(),
        lambda: opt.param_groups[0]["params"].append(opt.param_groups[1]["params"].pop()),
    ]
    for change in changes:
        saved = [list(g["params"]) for g in opt.param_groups]
        state = [(p.data, p.requires_grad) for p in (a, b, c)]
        change()
        assert layout.holds(opt.param_groups) == layout.matches(params())
        assert layout.holds(opt.param_groups) == (change is changes[0])
        for g, ps in zip(opt.param_groups, saved):
            g["params"][:] = ps
        for p, (data, rg) in zip((a, b, c), state):
            p.data, p.requires_grad = data, rg


def test_step_read_gathers_unsorted_coordinates_across_empty_parameters():
    """The gather tries the previous coordinate's parameter first: coordinates out of order,
    repeated, at the ends of parameters and next to empty ones still land in the right one."""
    lengths = [3, 0, 4, 0, 0, 5, 1]
    params, grads, moms, before, preclip = _case(lengths)
    state = [[torch.randn(n) for n in lengths]]
    index = np.array([12, 0, 2, 3, 3, 6, 7, 11, 2, 7, 12, 0, 6], np.int64)
    reader = fused.Reader(lengths, [m is not None for m in moms], [[True] * 7], index, split=True)
    got = reader(fused.step_library(), _tensors(params, grads, moms, before, preclip, state, True))
    assert got is not None
    np.testing.assert_array_equal(got[1][0], torch.cat(state[0]).numpy()[index])


@pytest.mark.parametrize("fused_path", [True, False])
def test_pre_hook_is_in_the_optimizer_only_while_a_step_is_armed(fused_path):
    """The monitor's step pre-hook (θ before the step) sits in the optimizer's hook dictionary
    only from the arming after the step before a sampled one until that step ends; the other
    steps run the post-hook alone. The update it measures is still the step's: ‖u‖ equals
    ‖θ_before − θ_after‖ computed here around each sampled step, and close() leaves no hook."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hooks = opt._optimizer_step_pre_hooks
    mon = Monitor(opt, model, every=3, fused=fused_path)
    present, expected = [], []
    x, y = torch.randn(8, 5), torch.randn(8, 3)
    for step in range(1, 8):
        present.append(len(hooks) == 1)
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if mon.sampled(step):
            u2 = sum(
                float(((b - p.detach()).double() ** 2).sum())
                for b, p in zip(before, model.parameters())
            )
            expected.append(math.sqrt(u2))
    # armed for steps 1, 4 and 7 (at construction, after steps 3 and 6)
    assert present == [True, False, False, True, False, False, True]
    rows = [r for r in mon.rows if "opt/update_norm" in r]
    assert [r["step"] for r in rows] == [1, 4, 7]
    assert mon.last_path == ("fused" if fused_path else "torch")
    for row, norm in zip(rows, expected):
        assert row["opt/update_norm"] == pytest.approx(norm, rel=1e-6)
    mon.close()
    assert len(hooks) == 0 and len(opt._optimizer_step_post_hooks) == 0


def test_parameter_changed_between_arming_and_the_sampled_step_is_read_as_it_is():
    """The layout is checked when the hooks are armed (after the step before a sampled one);
    a parameter whose data changes shape and size in between is refused by the native copy
    of θ, the groups are then checked again, and the step is read on the new layout: no
    error inside optimizer.step, ‖θ before the step‖ of the changed weights."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    mon = Monitor(opt, lin, every=2, fused=True)
    x = torch.randn(5, 4)
    for step in range(1, 4):
        if step == 3:  # armed after step 2 for a (3, 4) weight: now (3, 6)
            with torch.no_grad():
                lin.weight.data = torch.randn(3, 6)
                lin.in_features = 6
            x = torch.randn(5, 6)
        before = [p.detach().clone() for p in (lin.weight, lin.bias)]
        opt.zero_grad()
        lin(x).pow(2).mean().backward()
        opt.step()
    (row,) = [r for r in mon.rows if r["step"] == 3 and "opt/weight_norm" in r]
    w2 = sum(float((p.double() ** 2).sum()) for p in before)  # ‖θ before the step‖
    assert row["opt/weight_norm"] == pytest.approx(math.sqrt(w2), rel=1e-5)


def test_step_read_gathers_runs_of_two_sources_one_missing_for_some_parameters():
    """Each source read run by run (a run: consecutive coordinates in one parameter): a
    source missing for a parameter gives NaN over exactly its coordinates, the runs broken
    by out-of-order, repeated and boundary coordinates, around empty parameters."""
    lengths = [3, 0, 4, 0, 0, 5, 1]
    params, grads, moms, before, preclip = _case(lengths)
    state = [
        [torch.randn(n) for n in lengths],
        [None if j in (0, 5) else torch.randn(n) for j, n in enumerate(lengths)],
    ]
    index = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 12, 2, 3, 7, 6, 0], np.int64)
    present = [[t is not None for t in column] for column in state]
    reader = fused.Reader(lengths, [m is not None for m in moms], present, index, split=True)
    got = reader(fused.step_library(), _tensors(params, grads, moms, before, preclip, state, True))
    assert got is not None
    np.testing.assert_array_equal(got[1][0], torch.cat(state[0]).numpy()[index])
    second = torch.cat(
        [torch.full((n,), math.nan) if t is None else t for t, n in zip(state[1], lengths)]
    ).numpy()
    np.testing.assert_array_equal(got[1][1], second[index])  # NaN equal to NaN
