"""Learning-rate schedules as pure functions of the step, and a hook that applies them.

A schedule maps t, the number of optimizer updates done so far (0 for the first update), to a
factor of each param group's *base* lr: ``lr_t = base_lr × factor(t)``. Groups keep their
ratios, and because the factor depends on t alone, resuming a run needs nothing but t.

    constant            1
    step                γ^⌊t/step_size⌋                                   (torch StepLR)
    multistep           γ^(number of milestones ≤ t)                       (torch MultiStepLR)
    exponential         γ^t                                               (torch ExponentialLR)
    cosine              final + (1−final)·½(1 + cos(π·min(t, T)/T))       (torch CosineAnnealingLR
                                                                           up to T; held after)
    cosine_restarts     cosine over cycles of length period·mult^k        (…WarmRestarts)
    linear_warmup       start + (1−start)·t/W for t < W, then 1           (torch LinearLR)
    warmup_cosine       linear_warmup for W steps, then cosine to `final` at T (the LLM recipe;
                        equals transformers' get_cosine_schedule_with_warmup for start=final=0)
    polynomial          final + (1−final)·(1 − min(t, T)/T)^power           (torch PolynomialLR)
    one_cycle           torch's OneCycleLR as a factor of the max lr (see ``one_cycle``)
    sequence            join schedules: the i-th runs from boundary i−1 with its own clock

:class:`ReduceOnPlateau` is the one stateful factor: fed with ``report(metric)``, it multiplies
a scale by ``factor`` when the metric stopped improving. It composes with any schedule,
``lr = base_lr × schedule(t) × plateau.scale`` (e.g. warm-up → cosine with plateau cuts on top),
which torch's ReduceLROnPlateau cannot do (pytorch#68978).

:func:`attach` hooks a descend or torch.optim optimizer so that each real update advances t once
(steps skipped by ``nonfinite="skip"`` — counted in ``optimizer.state["skipped_steps"]`` — do
not) and sets every group's lr. The base lr lives in each group under ``"base_lr"``
(:data:`BASE_LR_KEY`; torch's schedulers use "initial_lr"); it is set from the group's lr the
first time a schedule sees the group and kept afterwards, so it travels in
``optimizer.state_dict()``.

Spec strings (:func:`from_spec`, used by the CLI, the trainer and the web page):
``"cosine:steps=1000,final=0.1"``; lists use ``/`` (``"multistep:milestones=30/60/90"``);
parts joined by ``>`` run one after another, each non-last part for its own length
(``"linear_warmup:warmup=100>cosine"``). A missing ``steps`` is filled from ``total_steps``
(for the last part of a sequence: what the earlier parts leave of it).
"""

from __future__ import annotations

import bisect
import inspect
import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "BASE_LR_KEY",
    "Schedule",
    "ReduceOnPlateau",
    "ScheduleHandle",
    "attach",
    "constant",
    "step",
    "multistep",
    "exponential",
    "cosine",
    "cosine_restarts",
    "linear_warmup",
    "warmup_cosine",
    "polynomial",
    "one_cycle",
    "sequence",
    "from_spec",
    "plateau_from_spec",
    "available",
    "REQUIRED",
    "scale_lr",
]

BASE_LR_KEY = "base_lr"


# ----------------------------------------------------------------------------- validation
def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _real(name: str, value: Any, low: float, high: float, *, open_low=False, open_high=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    inside = (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
    if not inside or math.isnan(v):
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(f"{name} must be in {left}{low:g}, {high:g}{right}, got {value!r}")
    return v


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- the type
class Schedule:
    """A factor of the base lr as a pure function of t = updates done so far (t ≥ 0).

    ``length`` is the number of steps the schedule describes (None: open-ended); a
    :func:`sequence` uses it as the default boundary.
    """

    __slots__ = ("name", "params", "length", "_factor")

    def __init__(
        self, name: str, params: dict[str, Any], factor: Callable[[int], float], length: int | None
    ) -> None:
        self.name, self.params, self.length, self._factor = name, params, length, factor

    def __call__(self, t: int) -> float:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
            raise ValueError(f"t (the step) must be an integer >= 0, got {t!r}")
        return float(self._factor(int(t)))

    def values(self, steps: int) -> list[float]:
        """[factor(0), …, factor(steps − 1)]."""
        return [self(t) for t in range(_int("steps", steps, 0))]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def _half_cosine(progress: float, final: float) -> float:
    """final + (1 − final)·½(1 + cos(π·progress)): 1 at progress 0, final at progress 1."""
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- schedules
def constant(steps: int | None = None) -> Schedule:
    """Factor 1 at every step. ``steps`` only gives it a length, for use inside a sequence."""
    length = None if steps is None else _int("steps", steps, 1)
    return Schedule("constant", {} if steps is None else {"steps": length}, lambda t: 1.0, length)


def step(step_size: int, gamma: float = 0.1) -> Schedule:
    """γ^⌊t/step_size⌋: multiply by γ every ``step_size`` steps (torch StepLR)."""
    size = _int("step_size", step_size, 1)
    g = _real("gamma", gamma, 0.0, math.inf, open_low=True, open_high=True)
    return Schedule("step", {"step_size": size, "gamma": g}, lambda t: g ** (t // size), None)


def multistep(milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """γ^k where k = number of milestones ≤ t (torch MultiStepLR); milestones increasing."""
    if isinstance(milestones, numbers.Integral):
        milestones = [milestones]
    marks = [_int("milestones", m, 1) for m in milestones]
    if not marks or any(a >= b for a, b in zip(marks, marks[1:])):
        raise ValueError(f"milestones must be strictly increasing integers >= 1, got {marks!r}")
    g = _real("gamma", gamma, 0.0, math.inf, open_low=True, open_high=True)
    return Schedule(
        "multistep",
        {"milestones": marks, "gamma": g},
        lambda t: g ** bisect.bisect_right(marks, t),
        None,
    )


def exponential(gamma: float) -> Schedule:
    """γ^t (torch ExponentialLR); γ > 1 grows, as in an LR range test."""
    g = _real("gamma", gamma, 0.0, math.inf, open_low=True, open_high=True)
    return Schedule("exponential", {"gamma": g}, lambda t: g**t, None)


def cosine(steps: int, final: float = 0.0) -> Schedule:
    """Half a cosine from 1 at t = 0 to ``final`` at t = steps, then held at ``final``.

    factor(t) = final + (1 − final)·½(1 + cos(π·min(t, steps)/steps)). Equals torch's
    CosineAnnealingLR(T_max=steps, eta_min=final·base_lr) for t ≤ steps (torch climbs back up
    after T_max).
    """
    n = _int("steps", steps, 1)
    f = _real("final", final, 0.0, 1.0)
    return Schedule("cosine", {"steps": n, "final": f}, lambda t: _half_cosine(min(t, n) / n, f), n)


def cosine_restarts(period: int, mult: int = 1, final: float = 0.0) -> Schedule:
    """Cosine from 1 to ``final`` over cycles of period, period·mult, period·mult², … steps.

    SGDR (Loshchilov & Hutter 2017); equals torch's CosineAnnealingWarmRestarts(T_0=period,
    T_mult=mult, eta_min=final·base_lr).
    """
    first = _int("period", period, 1)
    m = _int("mult", mult, 1)
    f = _real("final", final, 0.0, 1.0)

    def factor(t: int) -> float:
        if m == 1:
            return _half_cosine((t % first) / first, f)
        length, into = first, t
        while into >= length:
            into -= length
            length *= m
        return _half_cosine(into / length, f)

    return Schedule("cosine_restarts", {"period": first, "mult": m, "final": f}, factor, None)


def linear_warmup(warmup: int, start: float = 0.0) -> Schedule:
    """start + (1 − start)·t/warmup for t < warmup, then 1.

    Equals torch's LinearLR(start_factor=start, end_factor=1, total_iters=warmup) (torch needs
    start > 0). With start = 0 the first update uses lr 0, as transformers' warm-up does.
    """
    w = _int("warmup", warmup, 1)
    s = _real("start", start, 0.0, 1.0)
    return Schedule(
        "linear_warmup",
        {"warmup": w, "start": s},
        lambda t: s + (1.0 - s) * t / w if t < w else 1.0,
        w,
    )


def warmup_cosine(warmup: int, steps: int, final: float = 0.0, start: float = 0.0) -> Schedule:
    """Linear warm-up for ``warmup`` steps, then half a cosine to ``final`` at t = steps.

    factor(t) = start + (1 − start)·t/W for t < W, else
    final + (1 − final)·½(1 + cos(π·min(t − W, T − W)/(T − W))). ``steps`` (T) counts the
    warm-up too. With start = final = 0 this is transformers' get_cosine_schedule_with_warmup.
    """
    n = _int("steps", steps, 2)
    w = _int("warmup", warmup, 0)
    if w >= n:
        raise ValueError(f"warmup must be in [0, steps) = [0, {n}), got {warmup!r}")
    s = _real("start", start, 0.0, 1.0)
    f = _real("final", final, 0.0, 1.0)
    decay = n - w

    def factor(t: int) -> float:
        if t < w:
            return s + (1.0 - s) * t / w
        return _half_cosine(min(t - w, decay) / decay, f)

    params = {"warmup": w, "steps": n, "final": f, "start": s}
    return Schedule("warmup_cosine", params, factor, n)


def polynomial(steps: int, power: float = 1.0, final: float = 0.0) -> Schedule:
    """final + (1 − final)·(1 − min(t, steps)/steps)^power (torch PolynomialLR for final = 0).

    power = 1 is a linear decay to ``final``.
    """
    n = _int("steps", steps, 1)
    p = _real("power", power, 0.0, math.inf, open_low=True, open_high=True)
    f = _real("final", final, 0.0, 1.0)
    return Schedule(
        "polynomial",
        {"steps": n, "power": p, "final": f},
        lambda t: f + (1.0 - f) * (1.0 - min(t, n) / n) ** p,
        n,
    )


def one_cycle(
    steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
) -> Schedule:
    """Smith's one-cycle policy as torch's OneCycleLR computes it, as a factor of the max lr.

    The group's base lr is the max lr. The factor goes from 1/div_factor up to 1 by
    t = pct_start·steps − 1, then down to 1/(div_factor·final_div_factor) at t = steps − 1
    (``three_phase``: back to 1/div_factor by t = 2·pct_start·steps − 2 first). ``anneal`` is
    "cos" (½(1 + cos πp) interpolation) or "linear". After steps − 1 the last value is held
    (torch raises instead). Momentum cycling is not part of an lr schedule.
    """
    n = _int("steps", steps, 2)
    pct = _real("pct_start", pct_start, 0.0, 1.0, open_low=True, open_high=True)
    div = _real("div_factor", div_factor, 0.0, math.inf, open_low=True, open_high=True)
    final_div = _real(
        "final_div_factor", final_div_factor, 0.0, math.inf, open_low=True, open_high=True
    )
    how = _choice("anneal", anneal, ("cos", "linear"))
    if not isinstance(three_phase, bool):
        raise ValueError(f"three_phase must be true or false, got {three_phase!r}")
    low, peak = 1.0 / div, 1.0
    floor = low / final_div
    rise_end = pct * n - 1.0
    if three_phase:
        phases = [(rise_end, low, peak), (2 * pct * n - 2.0, peak, low), (n - 1.0, low, floor)]
    else:
        phases = [(rise_end, low, peak), (n - 1.0, peak, floor)]
    ends = [0.0] + [end for end, _, _ in phases]
    if any(b <= a for a, b in zip(ends, ends[1:])):
        raise ValueError(
            f"pct_start={pct!r} with steps={n} leaves a phase without steps: need "
            f"1 < pct_start·steps{' and 2·pct_start·steps − 1 < steps' if three_phase else ''}"
            f"{'' if three_phase else ' < steps'}"
        )

    def anneal_between(a: float, b: float, p: float) -> float:
        if how == "cos":
            return b + (a - b) / 2.0 * (math.cos(math.pi * p) + 1.0)
        return (b - a) * p + a

    def factor(t: int) -> float:
        t = min(t, n - 1)
        begin = 0.0
        for i, (end, a, b) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                return anneal_between(a, b, (t - begin) / (end - begin))
            begin = end
        raise AssertionError("unreachable: the last phase always answers")

    params = {
        "steps": n,
        "pct_start": pct,
        "div_factor": div,
        "final_div_factor": final_div,
        "anneal": how,
        "three_phase": three_phase,
    }
    return Schedule("one_cycle", params, factor, n)


def sequence(schedules: Sequence[Schedule], boundaries: Sequence[int] | None = None) -> Schedule:
    """Run ``schedules`` one after another; the i-th starts at boundaries[i − 1] with t = 0.

    factor(t) = schedules[i](t − boundaries[i − 1]) for boundaries[i − 1] ≤ t < boundaries[i].
    Without ``boundaries`` each schedule but the last runs for its own ``length``.
    """
    parts = list(schedules)
    if not parts or not all(isinstance(s, Schedule) for s in parts):
        raise ValueError(f"schedules must be a non-empty list of Schedule, got {schedules!r}")
    if boundaries is None:
        marks, at = [], 0
        for part in parts[:-1]:
            if part.length is None:
                raise ValueError(
                    f"{part!r} has no length; give it steps=… or pass boundaries explicitly"
                )
            at += part.length
            marks.append(at)
    else:
        marks = [_int("boundaries", b, 1) for b in boundaries]
    if len(marks) != len(parts) - 1 or any(a >= b for a, b in zip(marks, marks[1:])):
        raise ValueError(
            f"boundaries must be {len(parts) - 1} strictly increasing integers >= 1, got {marks!r}"
        )

    def factor(t: int) -> float:
        i = bisect.bisect_right(marks, t)
        return parts[i](t - (marks[i - 1] if i else 0))

    last = parts[-1].length
    length = None if last is None else (marks[-1] if marks else 0) + last
    return Schedule("sequence", {"schedules": parts, "boundaries": marks}, factor, length)


# ----------------------------------------------------------------------------- plateau
class ReduceOnPlateau:
    """A stateful factor: ``scale`` is multiplied by ``factor`` when the metric stalls.

    Same rule as torch's ReduceLROnPlateau. Each ``report(metric)``: the metric is *better*
    if below best·(1 − threshold) (mode "min", threshold_mode "rel"; "abs": best − threshold;
    mode "max" mirrors it). A better metric resets the count of bad reports, else it grows by
    one; during ``cooldown`` reports after a cut bad reports are not counted. When the count
    exceeds ``patience`` the scale becomes max(scale·factor, min_scale). A NaN metric is never
    better. Unlike torch, ``min_scale`` is relative to the base lr and there is no ``eps``.
    """

    def __init__(
        self,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_scale: float = 0.0,
    ) -> None:
        self.mode = _choice("mode", mode, ("min", "max"))
        self.factor = _real("factor", factor, 0.0, 1.0, open_low=True, open_high=True)
        self.patience = _int("patience", patience, 0)
        self.threshold = _real("threshold", threshold, 0.0, math.inf, open_high=True)
        self.threshold_mode = _choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _int("cooldown", cooldown, 0)
        self.min_scale = _real("min_scale", min_scale, 0.0, 1.0)
        self.scale = 1.0
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_reports = 0
        self.cooldown_left = 0
        self.reports = 0

    def _better(self, value: float) -> bool:
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            return value < (self.best * (1 - self.threshold) if rel else self.best - self.threshold)
        return value > (self.best * (1 + self.threshold) if rel else self.best + self.threshold)

    def report(self, metric: float) -> bool:
        """Feed one metric value; returns True when this report cut the scale."""
        value = float(metric)
        self.reports += 1
        if self._better(value):
            self.best, self.bad_reports = value, 0
        else:
            self.bad_reports += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_reports = 0
        if self.bad_reports > self.patience:
            self.cooldown_left, self.bad_reports = self.cooldown, 0
            new = max(self.scale * self.factor, self.min_scale)
            if new < self.scale:
                self.scale = new
                return True
        return False

    _STATE = ("scale", "best", "bad_reports", "cooldown_left", "reports")

    def state_dict(self) -> dict[str, Any]:
        return {"config": repr(self), **{k: getattr(self, k) for k in self._STATE}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("config") != repr(self):
            raise ValueError(f"plateau state is for {state.get('config')}, not {self!r}")
        for key in self._STATE:
            setattr(self, key, state[key])

    def __repr__(self) -> str:
        return (
            f"plateau(mode={self.mode!r}, factor={self.factor!r}, patience={self.patience!r}, "
            f"threshold={self.threshold!r}, threshold_mode={self.threshold_mode!r}, "
            f"cooldown={self.cooldown!r}, min_scale={self.min_scale!r})"
        )


# ----------------------------------------------------------------------------- attaching
class ScheduleHandle:
    """What :func:`attach` returns: reads and restores the schedule driving an optimizer.

    ``step`` counts the real updates seen (skipped non-finite steps excluded); every group's lr
    is ``group["base_lr"] × schedule(step) × plateau.scale``.
    """

    def __init__(self, optimizer: Any, schedule: Schedule, plateau: ReduceOnPlateau | None):
        self.optimizer, self.schedule, self.plateau = optimizer, schedule, plateau
        self.step = 0
        self._skipped_before = 0
        self._hooks = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]
        self._apply()

    @staticmethod
    def _skipped(optimizer: Any) -> int:
        return int(optimizer.state.get("skipped_steps", 0))

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._skipped_before = self._skipped(optimizer)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._skipped(optimizer) == self._skipped_before:  # a real update happened
            self.step += 1
            self._apply()

    def factor(self) -> float:
        """schedule(step) × plateau scale: the factor every group's base lr is multiplied by."""
        scale = 1.0 if self.plateau is None else self.plateau.scale
        return self.schedule(self.step) * scale

    def _apply(self) -> None:
        factor = self.factor()
        for group in self.optimizer.param_groups:
            lr = group["lr"]
            base = group.setdefault(BASE_LR_KEY, float(lr))
            if hasattr(lr, "fill_"):  # a tensor lr (capturable optimizers): keep the tensor
                lr.fill_(base * factor)
            else:
                group["lr"] = base * factor

    def lr(self, group: int = 0) -> float:
        """The lr of param group ``group`` now (the lr of the next update)."""
        return float(self.optimizer.param_groups[group]["lr"])

    def lrs(self) -> list[float]:
        """The lr of every param group now."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def report(self, metric: float) -> bool:
        """Feed a metric to the plateau factor and update the lrs; True when it cut them."""
        if self.plateau is None:
            raise ValueError("report() needs a plateau: attach(optimizer, schedule, plateau=…)")
        cut = self.plateau.report(metric)
        self._apply()
        return cut

    def state_dict(self) -> dict[str, Any]:
        """Step count and plateau state; save it beside ``optimizer.state_dict()``."""
        return {
            "step": self.step,
            "schedule": repr(self.schedule),
            "plateau": None if self.plateau is None else self.plateau.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved handle state (same schedule and plateau), then set the lrs."""
        if state["schedule"] != repr(self.schedule):
            raise ValueError(f"state is for schedule {state['schedule']}, not {self.schedule!r}")
        if (state["plateau"] is None) != (self.plateau is None):
            raise ValueError("state and handle disagree on whether a plateau is attached")
        self.step = _int("step", state["step"], 0)
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])
        self._apply()

    def detach(self) -> None:
        """Remove the hooks; the lrs stay where they are."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def attach(
    optimizer: Any,
    schedule: Schedule | str,
    plateau: ReduceOnPlateau | str | None = None,
    total_steps: int | None = None,
) -> ScheduleHandle:
    """Drive ``optimizer``'s lrs with ``schedule`` (and optionally a plateau factor).

    Sets each group's ``"base_lr"`` (if absent) to its lr and its lr to base × schedule(0);
    then each ``optimizer.step()`` that really updated advances t by one and sets
    lr = base × schedule(t) × plateau.scale. Spec strings are accepted for both (``total_steps``
    fills in a missing ``steps``, see :func:`from_spec`).

    To resume: save ``optimizer.state_dict()`` and ``handle.state_dict()``; later build the
    optimizer, load its state, attach the same schedule and call ``handle.load_state_dict``.
    """
    if isinstance(schedule, str):
        schedule = from_spec(schedule, total_steps=total_steps)
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule or a spec string, got {schedule!r}")
    if isinstance(plateau, str):
        plateau = plateau_from_spec(plateau)
    if plateau is not None and not isinstance(plateau, ReduceOnPlateau):
        raise ValueError(
            f"plateau must be a ReduceOnPlateau, a spec string or None, got {plateau!r}"
        )
    return ScheduleHandle(optimizer, schedule, plateau)


def scale_lr(lr: float, batch: int, base_batch: int, rule: str = "linear") -> float:
    """lr for batch size ``batch`` given one tuned at ``base_batch``.

    rule "linear": lr·batch/base_batch (Goyal et al. 2017, for SGD);
    rule "sqrt": lr·√(batch/base_batch) (keeps the gradient-noise scale; often used for Adam).
    """
    value = _real("lr", lr, 0.0, math.inf, open_low=True, open_high=True)
    b = _int("batch", batch, 1)
    b0 = _int("base_batch", base_batch, 1)
    how = _choice("rule", rule, ("linear", "sqrt"))
    ratio = b / b0
    return value * (ratio if how == "linear" else math.sqrt(ratio))


# ----------------------------------------------------------------------------- specs
_SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "step": step,
    "multistep": multistep,
    "exponential": exponential,
    "cosine": cosine,
    "cosine_restarts": cosine_restarts,
    "linear_warmup": linear_warmup,
    "warmup_cosine": warmup_cosine,
    "polynomial": polynomial,
    "one_cycle": one_cycle,
}


REQUIRED = "required"


def available() -> dict[str, dict[str, Any]]:
    """Schedule name → its keys with their defaults (:data:`REQUIRED` marks a required key)."""
    table = {}
    for name, build in _SCHEDULES.items():
        params = inspect.signature(build).parameters.values()
        table[name] = {
            p.name: REQUIRED if p.default is inspect.Parameter.empty else p.default for p in params
        }
    return table


def _parse_value(text: str) -> Any:
    text = text.strip()
    if "/" in text:
        return [_parse_value(part) for part in text.split("/")]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _parse_part(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = spec.strip().partition(":")
    key = name.strip().lower().replace("-", "_")
    if key == "plateau":
        raise ValueError(
            "plateau is a stateful factor, not a schedule of the step: pass it as "
            "attach(optimizer, schedule, plateau='plateau:patience=…')"
        )
    if key not in _SCHEDULES:
        raise ValueError(f"unknown schedule {name.strip()!r}; valid: {', '.join(_SCHEDULES)}")
    valid = available()[key]
    kwargs: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        k, eq, v = item.partition("=")
        k = k.strip()
        if not eq:
            raise ValueError(f"{key}: expected key=value, got {item!r}")
        if k not in valid:
            raise ValueError(f"unknown key {k!r} for {key}; valid: {', '.join(valid) or '(none)'}")
        kwargs[k] = _parse_value(v)
    return key, kwargs


def from_spec(spec: str, total_steps: int | None = None) -> Schedule:
    """Build a schedule from ``"name:key=value,…"`` (parts joined by ``>`` run in sequence).

    Examples: ``"cosine:final=0.1,steps=1000"``, ``"multistep:milestones=30/60,gamma=0.5"``,
    ``"linear_warmup:warmup=100>cosine:final=0.1"``. Names and keys are those of the
    functions of this module (see :func:`available`). A required ``steps`` left out is filled
    from ``total_steps``; in a sequence the last part gets ``total_steps`` minus the steps of
    the parts before it.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec must be a non-empty string like 'cosine:steps=1000', got {spec!r}")
    if total_steps is not None:
        total_steps = _int("total_steps", total_steps, 1)
    texts = spec.split(">")
    parts: list[Schedule] = []
    used = 0
    for i, text in enumerate(texts):
        key, kwargs = _parse_part(text)
        needs_steps = available()[key].get("steps") == REQUIRED
        if needs_steps and "steps" not in kwargs:
            if total_steps is None:
                raise ValueError(f"{key} needs steps=…; give it in the spec or pass total_steps")
            if i < len(texts) - 1:
                raise ValueError(f"{key} in the middle of a sequence needs an explicit steps=…")
            if total_steps - used < 1:
                raise ValueError(
                    f"total_steps={total_steps} leaves no steps for {key} after {used} steps"
                )
            kwargs["steps"] = total_steps - used
        if key == "multistep" and not isinstance(kwargs.get("milestones", []), list):
            kwargs["milestones"] = [kwargs["milestones"]]
        try:
            part = _SCHEDULES[key](**kwargs)
        except TypeError as exc:  # a required key left out
            missing = [k for k, v in available()[key].items() if v == REQUIRED and k not in kwargs]
            raise ValueError(f"{key} needs {', '.join(k + '=…' for k in missing)}") from exc
        if i < len(texts) - 1 and part.length is None:
            raise ValueError(f"{part!r} has no length, so it can only be the last part")
        used += part.length or 0
        parts.append(part)
    return parts[0] if len(parts) == 1 else sequence(parts)


def plateau_from_spec(spec: str) -> ReduceOnPlateau:
    """``"plateau:patience=5,factor=0.5"`` (the ``plateau:`` prefix is optional)."""
    text = spec.strip()
    if text.lower().startswith("plateau"):
        text = text[len("plateau") :].lstrip(":")
    valid = list(inspect.signature(ReduceOnPlateau).parameters)
    kwargs = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        k, eq, v = item.partition("=")
        if not eq or k.strip() not in valid:
            raise ValueError(f"unknown plateau key {item!r}; valid: {', '.join(valid)}")
        kwargs[k.strip()] = _parse_value(v)
    return ReduceOnPlateau(**kwargs)
