"""Step-by-step tables of everything an optimizer computes, read from its trace hook.

    >>> from descend.explain import explain, render
    >>> table = explain("adam", gradients=[0.02, 0.01, -0.03], lr=0.001)
    >>> print(render(table, "markdown"))

``explain`` feeds an optimizer a sequence of gradients (or the gradients of a function along
its own path), steps it, and returns a pandas DataFrame with one row per step — and per
element when the parameter is a vector. The numbers are the optimizer's own intermediates,
captured by :func:`descend.optim.tracing`; nothing is recomputed here.

Columns (a column appears only when the optimizer records that quantity). Notation: g the
gradient, t the step (1 on the first step), γ the learning rate, β/β₁/β₂/α the decay rates,
ε the stability constant, c₁ = 1 − β₁ᵗ and c₂ = 1 − β₂ᵗ the bias corrections:

========================  ==========  =====================================================
column                    trace name  meaning
========================  ==========  =====================================================
``step``                  step        the optimizer's step count t after the step
``element``               –           flat index of the element (only for vector parameters)
``loss``                  –           f(θ) where the gradient was taken (only with function=)
``gradient``              grad        g = ∂f/∂θ as the optimizer received it, + λθ under L2
                                      weight decay (before maximize's sign flip)
``grad_norm``             grad_norm   global ‖g‖₂ before clipping (with max_grad_norm)
``velocity``              velocity    momentum buffer: v = βv + g (modern, v₁ = g),
                                      v = βv + (1 − β)g (ema), v = βv + γg (lr_inside)
``first_moment``          m           m = β₁m + (1 − β₁)g (Adam family)
``second_moment``         v           v = β₂v + (1 − β₂)g² (Adam) or αv + (1 − α)g² (RMSprop)
``max_second_moment``     v_max       v_max = max(v_max, v) (AMSGrad)
``mean_gradient``         g_avg       ḡ = αḡ + (1 − α)g (centered RMSprop)
``sum_sq_gradients``      sum         s = s + g² (AdaGrad)
``first_moment_hat``      m_hat       m̂ = m/c₁; NAdam: its Nesterov blend
                                      μₜ₊₁m/(1 − Πₜ₊₁) + (1 − μₜ)g/(1 − Πₜ)
``second_moment_hat``     v_hat       v̂ = v/c₂ (Adam, NAdam; v_max for AMSGrad); RMSprop
                                      with bias_correction: ṽ/(1 − αᵗ), ṽ = v − ḡ² if
                                      centered, else v
``denominator``           denom       √v̂ + ε (ε outside) or √(v̂ + ε) (inside); √ṽ + ε for
                                      RMSprop without bias correction; √s + ε for AdaGrad
                                      (× (1 + (t − 1)δ) with lr_decay δ); √v + ε for Adam's
                                      ε-hat form
``effective_lr``          lr_eff      γ·P, the per-element factor that turns the core's
                                      moment into the update: P = 1/(c₁·denominator) for
                                      Adam (update = effective_lr·m), 1/denominator for
                                      RMSprop and AdaGrad (·g) and NAdam (·m̂), 1 for SGD
                                      and momentum (·g, ·v); lr_inside momentum: γ, with
                                      update = v. RMSprop with momentum: the velocity sums
                                      g/denominator and update = γ·velocity. Decoupled
                                      weight decay adds γλθ to the update on top
``update``                update      u, the step taken: θ ← θ − u
``new_param``             param       θ after the step
========================  ==========  =====================================================

Note that the notes' "effective learning rate" of Adam, α/(√v̂ + ε), multiplies m̂, not m: it
is ``effective_lr · c₁`` (equivalently γ/denominator). Any further quantity a chain records
appears under its trace name.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

__all__ = ["COLUMNS", "FORMATS", "explain", "render"]

FORMATS = ("rich", "markdown", "csv")


@dataclass(frozen=True)
class Column:
    """A documented column: its name in the table, the notes' symbol, a short meaning."""

    name: str
    symbol: str
    meaning: str


# trace record name -> column, in display order (the module docstring has the formulas).
COLUMNS: dict[str, Column] = {
    "grad": Column("gradient", "g", "the gradient the chain works on"),
    "grad_norm": Column("grad_norm", "‖g‖", "global L2 norm of the gradients before clipping"),
    "velocity": Column("velocity", "v", "momentum buffer"),
    "m": Column("first_moment", "m", "EWA of g"),
    "v": Column("second_moment", "v", "EWA of g²"),
    "v_max": Column("max_second_moment", "v_max", "running maximum of v (AMSGrad)"),
    "g_avg": Column("mean_gradient", "ḡ", "EWA of g (centered RMSprop)"),
    "sum": Column("sum_sq_gradients", "s", "running sum of g² (AdaGrad)"),
    "m_hat": Column("first_moment_hat", "m̂", "bias-corrected first moment"),
    "v_hat": Column("second_moment_hat", "v̂", "bias-corrected second moment"),
    "denom": Column("denominator", "√v̂+ε", "what the moment is divided by"),
    "lr_eff": Column("effective_lr", "γ_eff", "per-element learning rate on the moment"),
    "update": Column("update", "u", "the step: θ ← θ − u"),
    "param": Column("new_param", "θ", "parameter after the step"),
}


def explain(
    optimizer: Any,
    gradients: Any = None,
    function: Any = None,
    steps: int | None = None,
    start: float | Sequence[float] | None = None,
    **hyperparameters: Any,
) -> pd.DataFrame:
    """Run an optimizer for a few steps and tabulate every quantity it computes.

    Args:
        optimizer: a spec string (``"adam"``, ``"momentum:lr=0.1,momentum=0.9"``) or a descend
            optimizer (a :class:`descend.optim.ChainOptimizer` holding exactly one parameter;
            its current value and state are the starting point, so state can be preset).
        gradients: the gradient of each step: a sequence of scalars (one parameter) or of
            equal-length vectors (a vector parameter), or an array of shape (T, …).
        function: instead of ``gradients``: a callable f(θ) → scalar tensor (gradient by
            autograd), a landscape name such as ``"quadratic"`` or a
            :class:`descend.landscapes.Landscape`; the gradient is taken at the current θ.
        steps: number of steps; defaults to ``len(gradients)`` (may be fewer); required with
            ``function``.
        start: θ before the first step: a number or a vector. Default: 0 for gradients and
            callables, the landscape's first suggested start for a landscape; a descend
            optimizer's own parameter value (``start`` must then be left out).
        **hyperparameters: optimizer keywords (``lr``, ``momentum``, ``beta1``, ``eps`` …),
            overriding the spec's. With a landscape and no ``lr`` anywhere, the landscape's
            default learning rate for that optimizer is used.

    Returns:
        A DataFrame with the columns of the module docstring, one row per step (and element).
        ``frame.attrs`` holds ``"optimizer"`` (name), ``"hyperparameters"`` (the param
        group's numbers and switches) and ``"start"`` (θ before the first step, as a list).
    """
    from descend.optim import ChainOptimizer

    if (gradients is None) == (function is None):
        raise ValueError("explain needs exactly one of gradients= or function=, got both or none")
    grads = None if gradients is None else _gradient_array(gradients)
    steps = _check_steps(steps, grads)
    landscape = _landscape(function) if function is not None else None

    if isinstance(optimizer, ChainOptimizer):
        if hyperparameters:
            raise ValueError(
                "hyperparameters can only be given with a spec string; set them on the "
                f"optimizer instead (got {', '.join(sorted(hyperparameters))})"
            )
        if start is not None:
            raise ValueError(
                "start must be left out with an optimizer instance: its parameter's "
                "current value is the start"
            )
        opt, param, name = optimizer, _single_param(optimizer), type(optimizer).__name__
    elif isinstance(optimizer, str):
        shape = _param_shape(grads, landscape, start)
        theta0 = _start_tensor(start, shape, landscape)
        param = torch.nn.Parameter(theta0)
        opt, name = _build(optimizer, param, hyperparameters, landscape)
    else:
        raise ValueError(
            "optimizer must be a spec string like 'adam:lr=0.01' or a descend optimizer, got "
            f"{type(optimizer).__name__}"
        )

    if grads is not None and tuple(grads.shape[1:]) != tuple(param.shape):
        raise ValueError(
            f"gradients must each have the parameter's shape {tuple(param.shape)}, got "
            f"{tuple(grads.shape[1:])}"
        )
    source = _source(grads, function, landscape, param)
    start_values = param.detach().reshape(-1).tolist()
    rows = _run(opt, param, source, steps)
    frame = _frame(rows, vector=param.numel() > 1)
    frame.attrs.update(optimizer=name, hyperparameters=_group_settings(opt), start=start_values)
    frame.attrs["symbols"] = _own_symbols(opt, frame)
    return frame


def _own_symbols(opt: Any, frame: pd.DataFrame) -> dict[str, str]:
    """Symbols of the columns the optimizer's own transforms declare (``Transform.columns``)."""
    out: dict[str, str] = {}
    for group in opt.param_groups:
        for link in getattr(opt.chain(group), "transforms", []):
            for record, (symbol, _meaning) in getattr(link, "columns", {}).items():
                if record in frame.columns:
                    out[record] = symbol
    return out


# -- inputs -------------------------------------------------------------------------------------
def _gradient_array(gradients: Any) -> Tensor:
    if isinstance(gradients, Tensor):
        array = gradients.detach().to("cpu", torch.float64)
    else:
        try:
            array = torch.as_tensor(np.asarray(gradients, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(
                "gradients must be a sequence of numbers or of equal-length vectors, got "
                f"{gradients!r}"
            ) from None
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"gradients must hold at least one step, got {gradients!r}")
    return array


def _check_steps(steps: Any, grads: Tensor | None) -> int:
    if steps is None:
        if grads is None:
            raise ValueError("steps is required with function= (how many steps to take)")
        return int(grads.shape[0])
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if grads is not None and steps > grads.shape[0]:
        raise ValueError(
            f"steps={steps} exceeds the {grads.shape[0]} gradients given; give more gradients "
            "or fewer steps"
        )
    return int(steps)


def _landscape(function: Any) -> Any:
    """A Landscape for a name or a Landscape; None for a plain callable."""
    from descend.landscapes import Landscape, get

    if isinstance(function, Landscape):
        return function
    if isinstance(function, str):
        return get(function)
    if callable(function):
        return None
    raise ValueError(
        f"function must be a callable, a landscape name or a Landscape, got {function!r}"
    )


def _param_shape(grads: Tensor | None, landscape: Any, start: Any) -> tuple[int, ...]:
    if grads is not None:
        return tuple(grads.shape[1:])
    if landscape is not None:
        return (landscape.dim,)
    return tuple(np.shape(start)) if start is not None else ()


def _start_tensor(start: Any, shape: tuple[int, ...], landscape: Any) -> Tensor:
    if start is None:
        if landscape is not None and landscape.starts:
            start = landscape.starts[0]
        else:
            start = 0.0
    try:
        value = torch.as_tensor(np.asarray(start, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"start must be a number or a vector of numbers, got {start!r}") from None
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"start must be finite, got {start!r}")
    if value.ndim == 0:
        if landscape is not None and landscape.dim != 1:
            raise ValueError(
                f"start must have {landscape.dim} coordinates for landscape "
                f"{landscape.name!r}, got {start!r}"
            )
        return value.expand(shape).clone()
    if tuple(value.shape) != shape:
        raise ValueError(f"start must have shape {shape} (the parameter's), got {start!r}")
    return value.clone()


def _single_param(opt: Any) -> Tensor:
    params = [p for group in opt.param_groups for p in group["params"]]
    if len(params) != 1:
        raise ValueError(
            f"explain needs an optimizer holding exactly one parameter tensor, got {len(params)}"
        )
    return params[0]


def _build(spec: str, param: Tensor, overrides: dict, landscape: Any) -> tuple[Any, str]:
    from descend.optim import parse_spec
    from descend.optim.spec import REGISTRY, resolve_kwargs

    name, kwargs = parse_spec(spec)
    cls = REGISTRY[name][0]
    if cls.__name__ == "Newton":
        raise ValueError(
            "explain reads the trace hook of descend's chain optimizers; 'newton' has none "
            "(use descend.optim.Newton and its .last record instead)"
        )
    keys = _keywords(cls)
    valid = keys | ({"beta1", "beta2"} if "betas" in keys else set())
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter {unknown[0]!r} for optimizer {name!r}; valid: "
            f"{', '.join(sorted(valid))}"
        )
    merged = {**kwargs, **overrides}
    if "lr" not in merged and landscape is not None and name in landscape.default_lrs:
        merged["lr"] = landscape.default_lrs[name]
    return cls([param], **resolve_kwargs(name, merged)), name


def _keywords(cls: type) -> set[str]:
    """Keyword names an optimizer class accepts (the spec parser's list, which follows
    ``**kwargs`` to the base class: AMSGrad passes them on to Adam)."""
    from descend.optim.spec import keywords

    return set(keywords(cls))


def _source(grads: Tensor | None, function: Any, landscape: Any, param: Tensor) -> Any:
    """A function (step index, θ) → (gradient, loss or None)."""
    if grads is not None:
        return lambda i, theta: (grads[i].to(theta.dtype), None)
    if landscape is not None:

        def landscape_grad(i: int, theta: Tensor) -> tuple[Tensor, float]:
            point = theta.detach().reshape(1, -1)
            value, grad = landscape.value_and_grad(point)
            return grad.reshape(theta.shape), float(value[0])

        return landscape_grad

    def autograd(i: int, theta: Tensor) -> tuple[Tensor, float]:
        with torch.enable_grad():
            x = theta.detach().clone().requires_grad_(True)
            loss = function(x)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(
                    "function must return a scalar torch tensor computed from its argument, "
                    f"got {type(loss).__name__}"
                )
            if not loss.requires_grad:
                return torch.zeros_like(x), float(loss)
            (grad,) = torch.autograd.grad(loss.reshape(()), x, allow_unused=True)
        return (torch.zeros_like(x) if grad is None else grad), float(loss.detach())

    return autograd


# -- the run ------------------------------------------------------------------------------------
def _run(opt: Any, param: Tensor, source: Any, steps: int) -> list[tuple[float | None, dict]]:
    from descend.optim import tracing

    out: list[tuple[float | None, dict]] = []
    with tracing(opt) as records:
        for i in range(steps):
            grad, loss = source(i, param.detach())
            param.grad = grad.detach().clone().to(param.dtype)
            seen = len(records)
            opt.step()
            # nonfinite="skip" leaves no record: the skipped step has no row.
            out.extend((loss, record) for record in records[seen:])
    param.grad = None
    return out


def _frame(rows: list[tuple[float | None, dict]], vector: bool) -> pd.DataFrame:
    table: dict[str, list] = {"step": []}
    if vector:
        table["element"] = []
    if any(loss is not None for loss, _ in rows):
        table["loss"] = []
    names = [n for n in COLUMNS if any(n in record for _, record in rows)]
    extra = [
        n
        for _, record in rows
        for n in record
        if n not in COLUMNS and n not in ("group", "step") and n not in names
    ]
    names += list(dict.fromkeys(extra))
    for n in names:
        table[COLUMNS[n].name if n in COLUMNS else n] = []
    for loss, record in rows:
        size = int(record["param"][0].numel()) if "param" in record else 1
        for k in range(size):
            table["step"].append(int(record["step"]))
            if vector:
                table["element"].append(k)
            if "loss" in table:
                table["loss"].append(loss)
            for n in names:
                column = COLUMNS[n].name if n in COLUMNS else n
                table[column].append(_element(record.get(n), k))
    return pd.DataFrame(table)


def _element(values: list[Tensor] | None, k: int) -> float:
    """Element k of the record's (single) tensor; 0-d values (a global norm) broadcast."""
    if values is None:
        return math.nan
    tensor = values[0].detach().reshape(-1)
    return float(tensor[k] if tensor.numel() > 1 else tensor[0])


def _group_settings(opt: Any) -> dict:
    group = opt.param_groups[0]
    return {
        k: (tuple(v) if isinstance(v, list) else v)
        for k, v in group.items()
        if k != "params" and (v is None or isinstance(v, str | bool | numbers.Real | tuple | list))
    }


# -- rendering ----------------------------------------------------------------------------------
def render(
    frame: pd.DataFrame, fmt: str = "rich", digits: int = 6, title: str | None = None
) -> str:
    """The table as text: ``"rich"`` (a terminal table with the notes' symbols under the
    column names), ``"markdown"`` (GitHub pipe table) or ``"csv"`` (full precision).

    ``digits`` is the number of significant digits in the rich and Markdown tables."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 17:
        raise ValueError(f"digits must be an integer in [1, 17], got {digits!r}")
    if fmt == "csv":
        return frame.to_csv(index=False)
    cells = [[_format(v, digits) for v in row] for row in frame.itertuples(index=False)]
    if fmt == "markdown":
        lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
        lines.append("|" + "|".join("---:" for _ in frame.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(([f"**{title}**", ""] if title else []) + lines) + "\n"
    return _rich(frame, cells, title, frame.attrs.get("symbols", {}))


def _format(value: Any, digits: int) -> str:
    if isinstance(value, numbers.Integral):
        return str(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}g}"


def _rich(
    frame: pd.DataFrame, cells: list[list[str]], title: str | None, own: dict[str, str]
) -> str:
    from rich.console import Console
    from rich.table import Table

    symbols = {c.name: c.symbol for c in COLUMNS.values()} | own
    table = Table(title=title)
    widths = []
    for i, column in enumerate(frame.columns):
        header = f"{column}\n{symbols[column]}" if column in symbols else str(column)
        table.add_column(header, justify="right", no_wrap=True)
        widths.append(max([len(str(column))] + [len(row[i]) for row in cells]))
    for row in cells:
        table.add_row(*row)
    # Wide enough that no column is cut: each column's widest cell plus borders and padding.
    width = max(80, sum(w + 3 for w in widths) + 1)
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(table)
    return "".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines())
