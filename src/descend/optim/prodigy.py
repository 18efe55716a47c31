"""Prodigy: Adam with a step size estimated from the distance travelled."""

from __future__ import annotations

import math
from contextlib import ExitStack

import torch
from torch.optim.optimizer import _get_scalar_dtype

from ..transforms import Context, ProdigyRound, scale_by_prodigy
from ..transforms._sharded import is_sharded
from ..transforms.prodigy import fresh_estimate
from . import validation as check
from ._common import wrap
from .base import _as_real
from .declared import Declared, Spec
from .distributed import all_reduce_sum, spread_over

PRODIGY_DECAY_MODES = ("decoupled", "l2")


class Prodigy(Declared):
    """Prodigy (Mishchenko & Defazio, ICML 2024, https://arxiv.org/abs/2306.06101), as
    ``prodigyopt.Prodigy`` 1.1 computes it: Adam whose step size d is learnt.

        m ← β₁m + d(1 − β₁)g,   v ← β₂v + d²(1 − β₂)g²,   dγ = d·γ·c
        s ← β₃s + (d/d₀)·dγ·g   (safeguard_warmup: (d/d₀)·d·g)
        r ← β₃r + (d/d₀)·dγ·⟨g, θ₀ − θ⟩
        d̂ = d_coef·r/Σ‖s‖₁,   d_max ← max(d_max, d̂),   d ← min(d_max, d·growth_rate)
        θ ← θ − dγ·λθ (decouple) − dγ·m/(√v + d·ε)

    with c = √(1 − β₂ᵏ⁺¹)/(1 − β₁ᵏ⁺¹) under ``use_bias_correction`` (else 1), β₃ = √β₂ unless
    given, θ₀ the parameters at the first step and d starting at d₀. The learning rate γ is a
    multiplier of the learnt step (leave it at 1). **d is one estimate over every parameter of
    every group** (r and Σ‖s‖₁ are sums over all of them): each step measures all groups, then
    updates d, then steps all groups. Like prodigyopt, the β's, β₃, d_coef, growth_rate and
    use_bias_correction are read from the first group; ε, λ, d₀, safeguard_warmup and slice_p
    per group; every group's lr must be the largest one or 0. The estimate lives in every
    param group as prodigyopt keeps it (``d``, ``d_max``, ``d_numerator``, ``d_denom``,
    ``d_hat``, ``k``): ``opt.param_groups[0]["d"] * lr`` is the effective step size, and state
    dicts carry it. See :class:`descend.transforms.scale_by_prodigy`.

    Keywords and order as prodigyopt. ``decouple=True`` (default) is decoupled decay with the
    step dγ, ``False`` is L2 (g + λθ); ``weight_decay_mode="decoupled"|"l2"`` and
    ``decoupled_weight_decay`` say the same.

    Across processes d stays one estimate: where each rank holds a share of the parameters —
    FSDP2's DTensor shards, a ZeroRedundancyOptimizer's partition (``process_group``, see
    :mod:`descend.optim.distributed`) — the sums r and Σ‖s‖₁ of each rank's share are
    all-reduced (one ``all_reduce`` of a float64 vector per step and process group) before d
    is updated, so every rank takes the same d and the run equals one process's. Under FSDP2
    s and θ₀ have the parameter's shape and sharding (one process keeps them flat), and
    ``slice_p`` must be 1 (a sliced vector has no sharding that matches the parameter's).
    DDP needs no reduction (every rank has every gradient). ``fsdp_in_use`` (prodigyopt's
    switch for the same reduction) must stay False: descend reduces wherever it is needed.
    Discrepancy with prodigyopt: a frozen group (lr = 0) does not move here; prodigyopt still
    applies the shared dγ to it (decaying it, and with β₁ = 0 stepping g/(dε)).

    Chain: [clip] [maximize] [L2] → scale_by_prodigy (its own lr and decoupled decay).
    """

    keywords = (
        "lr",
        "betas",
        "beta3",
        "eps",
        "weight_decay",
        "decouple",
        "use_bias_correction",
        "safeguard_warmup",
        "d0",
        "d_coef",
        "growth_rate",
        "fsdp_in_use",
        "slice_p",
    )
    conventions = {
        "torch": dict(
            lr=1.0,
            betas=(0.9, 0.999),
            beta3=None,
            eps=1e-8,
            weight_decay=0.0,
            decouple=None,
            weight_decay_mode=None,
            use_bias_correction=False,
            safeguard_warmup=False,
            d0=1e-6,
            d_coef=1.0,
            growth_rate=math.inf,
            fsdp_in_use=False,
            slice_p=1,
        )
    }
    specs = {
        "prodigy": Spec(
            "Prodigy: Adam whose step size d is learnt from the distance travelled",
            lab_lr=("newton", 0.1),
        )
    }
    choices = {"weight_decay_mode": PRODIGY_DECAY_MODES}
    structure = ("decouple",)
    couples = True  # d is one estimate over every coordinate of every group

    # -- the decay switch: prodigyopt's `decouple` and descend's weight_decay_mode -------------
    def add_param_group(self, param_group: dict) -> None:
        _resolve_decay(self.defaults)
        group = dict(param_group)
        decoupled = group.pop("decoupled_weight_decay", None)
        if decoupled is not None:
            implied = "decoupled" if decoupled else "l2"
            if group.setdefault("weight_decay_mode", implied) != implied:
                raise ValueError(
                    f"decoupled_weight_decay={decoupled} contradicts weight_decay_mode="
                    f"{group['weight_decay_mode']!r}; give only one of them"
                )
        if group.get("decouple") is not None or group.get("weight_decay_mode") is not None:
            _resolve_decay(group)
        for key, value in fresh_estimate(group.get("d0", self.defaults["d0"])).items():
            group.setdefault(key, value)
        if self.param_groups:
            _check_lrs([*self.param_groups, {**self.defaults, **group}])
        _check_sharding(group.get("slice_p", self.defaults["slice_p"]), group["params"])
        super().add_param_group(group)

    def validate(self, group: dict) -> None:
        group = dict(group)
        _resolve_decay(group)
        super().validate(group)

    def check(self, group: dict) -> None:
        check.betas(group["betas"])
        if group["beta3"] is not None:
            check.decay_rate("beta3", group["beta3"])
        _positive("eps", group["eps"])
        _positive("d0", group["d0"])
        _positive("d_coef", group["d_coef"])
        check.number("growth_rate", group["growth_rate"])
        if not group["growth_rate"] >= 1:
            raise ValueError(
                f"growth_rate={group['growth_rate']!r} is invalid: it must be ≥ 1 (inf: "
                "unbounded); it bounds how fast d may grow per step"
            )
        check.flag("use_bias_correction", group["use_bias_correction"])
        check.flag("safeguard_warmup", group["safeguard_warmup"])
        slice_p = group["slice_p"]
        if isinstance(slice_p, bool) or not isinstance(slice_p, int) or slice_p < 1:
            raise ValueError(f"slice_p={slice_p!r} is invalid: it must be an integer ≥ 1")
        if group["fsdp_in_use"] is not False:
            raise ValueError(
                f"fsdp_in_use={group['fsdp_in_use']!r} is invalid: it must be False; descend's "
                "Prodigy reduces its d estimate across ranks by itself (over a DTensor's mesh "
                "or the optimizer's process_group)"
            )

    def chain(self, group: dict):
        key = self.shape(group)
        chains = self.__dict__.setdefault("_chains", {})
        if key not in chains:
            l2 = group["weight_decay_mode"] == "l2"
            core = [scale_by_prodigy(decouple=not l2)]
            chains[key] = wrap({**group, "weight_decay_mode": "l2" if l2 else None}, core, True)
        return chains[key]

    # -- the step: every group measured, then d, then every group stepped ----------------------
    @torch.no_grad()
    def step(self, closure=None):
        pending: list = []
        skipped = self.skipped_steps
        with ExitStack() as stack:
            self.__dict__["_prodigy"] = (pending, stack)
            try:
                loss = super().step(closure)  # checks, clipping norms; groups go to `pending`
            finally:
                del self.__dict__["_prodigy"]
            # a ZeRO rank whose share has no gradient still takes part in the reduction
            shared = self.process_group is not None and self.skipped_steps == skipped
            if pending or shared:
                self._step_all(pending)
        return loss

    def _step_group(self, index: int, group: dict, params: list) -> None:
        pending, stack = self.__dict__["_prodigy"]
        if any(p.is_complex() for p in params):  # real views, kept open until the step ends
            params = stack.enter_context(_as_real(self, params))
        norm = self.__dict__.get("_global_norms", {}).get(index)
        pending.append((index, group, params, norm))

    def _step_all(self, pending: list) -> None:
        rnd = ProdigyRound.start(self.param_groups)  # checks the lrs before anything changes
        for _, group, params, _ in pending:
            _check_sharding(group["slice_p"], params)
        from .fast import step_group

        shares = _Shares(self, len(self.param_groups))
        runs = []
        for index, group, params, norm in pending:
            if self.fused is not False and not self._trace_hooks:
                step_group(self, index, group, params)  # records why the default path runs
            else:
                reason = "fused=False" if self.fused is False else "a trace hook is registered"
                self.__dict__.setdefault("_fast_last", {})[index] = reason
            links = self.chain(group).transforms
            head, core = links[:-1], links[-1]
            states = []
            for p in params:
                st = self.state[p]
                if "step" not in st:
                    st["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
                states.append(st)
            steps = [st["step"] for st in states]
            torch._foreach_add_(steps, 1)
            ctx = Context(group, steps, trace={} if self._trace_hooks else None)
            if norm is not None:
                ctx.extras["global_grad_norm"] = norm
            updates = [p.grad for p in params]
            ctx.record("grad", updates)
            for link in head:
                updates = link.update(updates, states, params, ctx)
            shares.measure(core, updates, states, params, ctx, rnd)
            runs.append((index, ctx, core, updates, states, params))
        stepped = shares.reduce(rnd)  # r and Σ‖s‖₁ over every rank's share
        rnd.finish(self.param_groups)
        if rnd.d_new is not None:  # a group stepped on other ranks only (ZeRO) counts too
            ran = {index for index, *_ in runs}
            for index in stepped - ran:
                group = self.param_groups[index]
                group["k"] = group.get("k", 0) + 1
        for index, ctx, core, updates, states, params in runs:
            ctx.extras["prodigy"] = rnd
            out = core.update(updates, states, params, ctx)
            decay = ctx.extras.get("decay")
            ctx.record("update", out if decay is None else torch._foreach_add(out, decay))
            torch._foreach_sub_(params, out)
            if ctx.trace is not None:
                ctx.record("param", params)
                for hook in list(self._trace_hooks.values()):
                    hook(self, index, ctx.trace)


def _positive(name: str, value) -> None:
    check.number(name, value)
    if not all(0 < v < math.inf for v in check._values(value)):
        raise ValueError(f"{name}={value!r} is invalid: it must be finite and > 0")


def _resolve_decay(group: dict) -> None:
    """Make ``decouple`` and ``weight_decay_mode`` agree (either may be None: the other one
    decides; both None: prodigyopt's default, decoupled)."""
    decouple, mode = group.get("decouple"), group.get("weight_decay_mode")
    if mode is not None:
        check.choice("weight_decay_mode", mode, PRODIGY_DECAY_MODES)
    if decouple is not None:
        check.flag("decouple", decouple)
    implied = None if decouple is None else ("decoupled" if decouple else "l2")
    if implied is not None and mode is not None and implied != mode:
        raise ValueError(
            f"decouple={decouple} contradicts weight_decay_mode={mode!r}; give only one of them"
        )
    mode = mode or implied or "decoupled"
    group["weight_decay_mode"], group["decouple"] = mode, mode == "decoupled"


def _check_sharding(slice_p, params) -> None:
    """A DTensor parameter keeps s and θ₀ sharded like itself: slice_p must be 1."""
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    if slice_p != 1 and any(is_sharded(p) for p in params):
        raise ValueError(
            f"slice_p={slice_p!r} is invalid for sharded (DTensor) parameters: it must be 1 "
            "(every slice_p-th element of a flattened tensor has no sharding that matches "
            "the parameter's; FSDP2 already divides the state's memory by the ranks)"
        )


class _Shares:
    """Each group's share of Prodigy's sums r and Σ‖s‖₁, kept apart per set of process groups
    it is spread over (:func:`descend.optim.distributed.spread_over`), and reduced across
    ranks in :meth:`reduce`. In one process (nothing spread) the sums accumulate as before."""

    def __init__(self, opt: Prodigy, n_groups: int):
        self.opt, self.n = opt, n_groups
        own = opt.process_group
        self.parts: dict[tuple, tuple[tuple, torch.Tensor]] = {}
        if own is not None:  # every rank reduces over it, whatever its share holds
            self._part((own,))

    def _part(self, groups: tuple) -> torch.Tensor:
        key = tuple(map(id, groups))
        if key not in self.parts:
            self.parts[key] = (groups, torch.zeros(2 + self.n, dtype=torch.float64))
        return self.parts[key][1]

    def measure(self, core, updates, states, params, ctx, rnd: ProdigyRound) -> None:
        groups = spread_over(self.opt, params)
        if not groups:
            core.measure(updates, states, params, ctx, rnd)
            return
        delta, denom = rnd.delta, rnd.denom
        rnd.delta = rnd.denom = 0.0
        core.measure(updates, states, params, ctx, rnd)
        vec = self._part(groups)
        vec[0] += rnd.delta
        vec[1] += rnd.denom
        index = next(i for i, g in enumerate(self.opt.param_groups) if g is ctx.group)
        vec[2 + index] = 1.0
        rnd.delta, rnd.denom = delta, denom

    def reduce(self, rnd: ProdigyRound) -> set[int]:
        """Add every rank's shares to ``rnd``; the indices of the groups that had a gradient
        on some rank."""
        stepped: set[int] = set()
        for groups, vec in self.parts.values():
            total = all_reduce_sum(vec, groups)
            rnd.delta += float(total[0])
            rnd.denom += float(total[1])
            stepped.update(i for i in range(self.n) if total[2 + i] > 0)
        return stepped


def _check_lrs(groups: list[dict]) -> None:
    """prodigyopt's rule: one lr for every group (the shared d scales it), or 0 (frozen)."""
    lrs = [float(g["lr"]) for g in groups]
    top = max(lrs)
    for i, lr in enumerate(lrs):
        if lr not in (top, 0.0):
            raise ValueError(
                f"Prodigy: param group {i} has lr={lr!r}, but the step size d is shared by all "
                f"groups: every group's lr must be the largest one ({top!r}) or 0 (frozen)"
            )
