"""The monitor's per-coordinate rates in C++ (``descend_monitor_rates``) against their
reference, the numpy formulas (``flat.state_rates`` = ``train.metrics._param_eff_lr`` for the
rate): bit for bit (the same float32 operations in the same order) for every optimizer kind
the monitor reads, on the live optimizer state with zeros, NaN, ±inf and negatives planted;
bad programs and groups refused without writing; and the monitor's rows through them equal
the numpy path's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import require_kernels
from descend import optim
from descend.monitor import Monitor, flat, fused
from descend.monitor.core import _arrangement


@pytest.fixture(autouse=True)
def _kernels():
    require_kernels()


# (name, maker): every kind whose state the monitor reads, descend's on both of its paths
MAKERS = {
    "adam_fused": lambda p: optim.Adam(p, lr=1e-2, fused=True),
    "adam_chain": lambda p: optim.Adam(p, lr=1e-2, fused=False),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "amsgrad_raw": lambda p: optim.Adam(p, lr=1e-2, amsgrad=True),
    "amsgrad_corrected": lambda p: optim.Adam(p, lr=1e-2, amsgrad=True, amsgrad_of="corrected"),
    "amsgrad_class": lambda p: optim.AMSGrad(p, lr=1e-2),
    "adam_inside": lambda p: optim.Adam(p, lr=1e-2, eps_placement="inside", eps=1e-3),
    "adam_hat": lambda p: optim.Adam(p, lr=1e-2, eps_placement="hat"),
    "adam_no_bc": lambda p: optim.Adam(p, lr=1e-2, bias_correction=False),
    "adam_bc_v_only": lambda p: optim.Adam(p, lr=1e-2, bias_correction=(False, True)),
    "nadam": lambda p: optim.NAdam(p, lr=1e-2),
    "rmsprop": lambda p: optim.RMSprop(p, lr=1e-2),
    "rmsprop_centered": lambda p: optim.RMSprop(p, lr=1e-2, centered=True, momentum=0.9),
    "adagrad": lambda p: optim.Adagrad(p, lr=1e-2, lr_decay=0.01),
    "sgd": lambda p: optim.SGD(p, lr=1e-2, momentum=0.9),
    "torch_adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "torch_adamw_amsgrad": lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True),
    "torch_nadam": lambda p: torch.optim.NAdam(p, lr=1e-2),
    "torch_rmsprop_centered": lambda p: torch.optim.RMSprop(p, lr=1e-2, centered=True),
    "torch_adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2, lr_decay=0.05),
    "torch_sgd": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
}


def _stepped(make, steps=3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    try:
        opt = make(model.parameters())
    except TypeError as e:  # a switch this build's optimizer does not take
        pytest.fail(f"optimizer rejected its arguments: {e}")
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, opt


PLANTED = [0.0, -0.0, float("nan"), float("inf"), -1e-3, 1e-38, 3e38]


@pytest.mark.parametrize("name", list(MAKERS))
def test_native_rates_are_the_numpy_formulas_bit_for_bit(name):
    model, opt = _stepped(MAKERS[name])
    group = opt.param_groups[0]
    params = list(group["params"])
    states = [opt.state[p] for p in params]
    keys, _, rate_keys = _arrangement(states, params)
    scalars = {"step": float(states[0]["step"])} if "step" in keys else {}
    if "mu_product" in keys:
        scalars["mu_product"] = states[0]["mu_product"]
    # every coordinate, then the planted values (each state row gets them) at the end
    rows = [torch.cat([st[k].reshape(-1) for st in states]).numpy() for k in rate_keys]
    rows = [np.concatenate([r, np.array(PLANTED, np.float32)]).astype(np.float32) for r in rows]
    values = {k: r for k, r in zip(rate_keys, rows)}
    want_v, want_e = flat.state_rates({**group}, dict(values), scalars)
    program = fused.rate_program(
        {**group}, rate_keys, scalars, {k: i for i, k in enumerate(rate_keys)}
    )
    assert program is not None
    size = len(rows[0]) if rows else 0
    gathered = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    got = fused.rates([program], gathered, np.zeros(size, np.int64))
    assert got is not None
    adaptive = name not in ("sgd", "torch_sgd")
    assert (want_e is not None) == adaptive
    for want, row in ((want_v, got[0]), (want_e, got[1])):
        if want is None:
            assert np.isnan(row).all()
        else:
            assert want.dtype == np.float32
            np.testing.assert_array_equal(row.view(np.uint32), np.asarray(want).view(np.uint32))


def _program_and_numpy(group, rate_keys, values, scalars):
    program = fused.rate_program(group, rate_keys, scalars, {k: i for i, k in enumerate(rate_keys)})
    want = flat.state_rates(group, dict(values), scalars)
    return program, want


@pytest.mark.parametrize("name", ["adam_hat", "adam_bc_v_only", "rmsprop", "adagrad"])
def test_kept_program_shapes_follow_new_steps_rates_and_switches(name):
    # a shape kept from an earlier call (same switches, keys and rows) gives the numpy
    # formulas' bits at another step and lr; a changed switch is not served the kept shape
    model, opt = _stepped(MAKERS[name])
    group = opt.param_groups[0]
    states = [opt.state[p] for p in group["params"]]
    _, _, rate_keys = _arrangement(states, list(group["params"]))
    values = {k: torch.cat([st[k].reshape(-1) for st in states]).numpy() for k in rate_keys}
    gathered = np.stack([values[k] for k in rate_keys])
    switch = {"adam_hat": ("eps_placement", "inside"), "adam_bc_v_only": ("bias_correction", True)}
    switch |= {"rmsprop": ("centered", True), "adagrad": ("lr_decay", 0.5)}
    key, other = switch[name]
    if key == "centered":  # a centered RMSprop also needs grad_avg
        rate_keys = (*rate_keys, "grad_avg")
        values["grad_avg"] = values[rate_keys[0]] * np.float32(0.5)
        gathered = np.stack([values[k] for k in rate_keys])
    for step, lr, changed in ((3.0, 1e-2, False), (7.0, 3e-3, False), (11.0, 5e-3, True)):
        g = {**group, "lr": lr}
        if changed:
            g[key] = other
        program, (want_v, want_e) = _program_and_numpy(g, rate_keys, values, {"step": step})
        got = fused.rates([program], gathered, np.zeros(gathered.shape[1], np.int64))
        for want, row in ((want_v, got[0]), (want_e, got[1])):
            np.testing.assert_array_equal(row.view(np.uint32), want.view(np.uint32))


def test_native_rates_follow_each_entrys_group_and_refuse_bad_programs():
    gathered = np.array([[4.0, 9.0, 16.0, 25.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    # group 0: v̂ = x / 2, rate = 0.5 / (1 · (√x + 0)); group 1: nothing
    adam = [0, 1, 2.0, 0, -1, 0, 1.0, 0, 0.5, 1.0, 0.0]
    none = [-1, 0, 1.0, -1, -1, 0, 1.0, 0, 0.0, 1.0, 0.0]
    got = fused.rates([adam, none], gathered, np.array([0, 1, -1, 0]))
    np.testing.assert_array_equal(got[0], [2.0, np.nan, np.nan, 12.5])
    np.testing.assert_array_equal(got[1], np.float32([0.25, np.nan, np.nan, 0.1]))
    # centered, inside, divided: (0.5) / (2 · √((x − a²)/4 + 1))
    centered = [-1, 0, 1.0, 0, 1, 1, 4.0, 1, 0.5, 2.0, 1.0]
    got = fused.rates([centered], gathered, np.zeros(4, np.int64))
    x = gathered[0] - gathered[1] * gathered[1]
    want = np.float32(0.5) / (np.float32(2.0) * np.sqrt(x / np.float32(4.0) + np.float32(1.0)))
    np.testing.assert_array_equal(got[1], want)
    for bad in (
        [2, 0, 1.0, -1, -1, 0, 1.0, 0, 0.0, 1.0, 0.0],  # a row past the keys
        [0.5, 0, 1.0, -1, -1, 0, 1.0, 0, 0.0, 1.0, 0.0],  # not an integer
        [-2, 0, 1.0, -1, -1, 0, 1.0, 0, 0.0, 1.0, 0.0],  # below -1
        [0, 2, 1.0, -1, -1, 0, 1.0, 0, 0.0, 1.0, 0.0],  # a flag not 0 or 1
        [-1, 0, 1.0, 0, 7, 0, 1.0, 0, 0.0, 1.0, 0.0],  # a centering row past the keys
        [-1, 0, 1.0, 0, -1, 0, 1.0, float("nan"), 0.0, 1.0, 0.0],  # a NaN flag
    ):
        assert fused.rates([bad], gathered, np.zeros(4, np.int64)) is None
    for group in ([0, 1, 0, 2], [0, -2, 0, 0]):  # a group outside [-1, groups)
        assert fused.rates([adam, none], gathered, np.array(group)) is None
    with pytest.raises(ValueError, match="group must hold one entry per sample"):
        fused.rates([adam], gathered, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="each program holds 11"):
        fused.rates([adam[:5]], gathered, np.zeros(4, np.int64))


@pytest.mark.parametrize("name", ["adam_fused", "rmsprop_centered", "torch_adagrad", "nadam"])
def test_monitor_rows_through_native_rates_equal_the_numpy_paths(name, monkeypatch):
    rows, calls = [], []
    real, real_combine = fused.rates, fused.combine
    monkeypatch.setattr(fused, "rates", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(fused, "combine", lambda *a: calls.append(2) or real_combine(*a))
    # the rows step by step (the flush's one call for all rows, which would take them, is
    # test_monitor_rows.py's)
    monkeypatch.setattr(Monitor, "_native_rows", lambda self, pendings: None)
    for native in (True, False):
        if not native:  # the numpy formulas and stats.combine only
            monkeypatch.setattr(Monitor, "_native_rates", staticmethod(lambda *a: None))
            monkeypatch.setattr(fused, "combine", lambda *a: None)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
        opt = MAKERS[name](
            [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 3e-3}]
        )
        mon = Monitor(opt, model, every=2, fused=True, source="state")
        x, y = torch.randn(16, 6), torch.randn(16, 3)
        for _ in range(7):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        assert mon.last_path == "fused"
        rows.append(mon.rows)
        # per sampled step one native call for the rates; one for the combination from the
        # second on (the first is read the general way, which builds the prebuilt reader)
        assert sorted(calls) == ([1, 1, 1, 1, 2, 2, 2] if native else []), calls
        calls.clear()
        mon.close()
    native, reference = rows
    assert [r.keys() for r in native] == [r.keys() for r in reference]
    assert any("opt/eff_lr_p50" in r for r in native)
    for a, b in zip(native, reference):
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=True), k


def test_native_combination_is_stats_combine_bit_for_bit():
    from descend.monitor import stats

    rng = np.random.default_rng(0)
    n = 6
    sums = rng.random((n, fused.SUMS)) * 10.0 ** rng.integers(-30, 30, (n, fused.SUMS))
    sums[:, 5] *= rng.choice([-1.0, 1.0], n)  # m·g of either sign
    sums[:, 6:] = rng.integers(0, 50, (n, 3))  # counts
    sums[1, :] = 0.0  # a parameter with nothing (0 norms, 0 counts)
    sums[2, 4] = sums[2, 5] = 0.0  # no momentum
    sums[3, 2] = np.inf  # an infinite ‖g‖²
    sums[4, 0] = np.nan
    spans = [(0, n), (0, 2), (1, 2), (2, 3), (3, 6), (5, 5)]
    got = fused.combine(sums, spans, True)
    order = (3, 0, 2, 5, 4, 6, 7, 8)  # u2 w2 g2 mg m2 opposed nonzero nonfinite
    for s, (first, end) in enumerate(spans):
        want = stats.combine([[sum(sums[first:end, r].tolist()) for r in order]])
        values = got[8 * s : 8 * s + 8]
        assert values[7] == float("momentum_cos" in want)
        for name, value in zip((*fused_names(), "momentum_cos"), values):
            if name in want:
                assert np.array_equal(value, want[name], equal_nan=True), (s, name)
    import math

    for j in range(n):
        ratio = stats._ratio(math.sqrt(sums[j, 3]), math.sqrt(sums[j, 0]))
        grad = math.sqrt(sums[j, 2])
        pair = got[8 * len(spans) + 2 * j : 8 * len(spans) + 2 * j + 2]
        assert np.array_equal(pair, [ratio, grad], equal_nan=True), j
    for bad in ([(0, n + 1)], [(-1, 2)], [(3, 2)]):
        assert fused.combine(sums, bad, False) is None
    with pytest.raises(ValueError, match="sums must be n × 9"):
        fused.combine(sums[:, :8], [(0, 1)], False)


def fused_names():
    from descend.monitor.core import _COMBINED

    return _COMBINED


def test_kernel_quantiles_by_multi_select_equal_numpys_at_every_rank():
    # rows short enough for multi_select alone: every length up to 40 and one of 2,048, ties
    # and ±0, quantiles at the ends (min and max scans) and pairs of adjacent ranks
    rng = np.random.default_rng(1)
    qs = (0.0, 0.05, 0.1, 0.5, 0.51, 0.9, 0.999, 1.0)
    rows = [rng.integers(-3, 4, n).astype(np.float32) for n in range(1, 41)]
    rows.append(rng.standard_normal(2048).astype(np.float32))
    rows[5][0] = -0.0
    data = np.concatenate(rows)
    spans, at = [], 0
    for r in rows:
        spans.append((at, len(r)))
        at += len(r)
    got = fused.quantiles(data, spans, qs)
    for r, values in zip(rows, got):
        want = np.quantile(r.astype(np.float64), qs)
        np.testing.assert_array_equal(values, want)
