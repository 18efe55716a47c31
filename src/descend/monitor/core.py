"""``Monitor``: what the optimizer does inside your own training loop, every k steps.

It hangs on the optimizer's step pre- and post-hooks, so it needs no change to the loop. On a
sampled step only (steps 1, k + 1, 2k + 1, … counted in optimizer updates) it

- snapshots the parameters before the step and reads them after: u = θ_before − θ_after;
- reads the gradient the optimizer used (after any clipping) and, through tensor hooks armed
  for that step's backward passes only, each backward's own gradient gᵢ: their sum is the
  gradient before clipping, and with k ≥ 2 micro-batches (accumulation) they give the gradient
  noise scale B_simple (McCandlish et al. 2018);
- reads the optimizer's internals — the momentum buffer, the bias-corrected second moment v̂
  and the per-coordinate effective learning rate (γ times the preconditioner,
  γ/(√v̂ + ε) for Adam) — from its state (``exp_avg``, ``exp_avg_sq``, ``square_avg``,
  ``sum``, ``momentum_buffer``; descend's switches included, see
  :func:`descend.train.metrics._param_eff_lr`), so descend's fast kernels keep running and a
  monitored run is bit for bit the unmonitored one; where descend's chain runs anyway
  (``fused=False``) or only the chain knows its state (a free ``from_chain`` chain), from the
  chain's own named intermediates through a trace hook registered for that one step.

Unsampled steps cost two hook calls and a modulo. Names of what is written (see
:data:`METRICS`): ``opt/<metric>`` over the whole model, ``opt/group<i>/<metric>`` per param
group (``lr`` and ``v_bias_correction`` always, the rest when there are several groups),
``layer/<parameter name>/<metric>`` per named parameter, and ``loss`` (every step, through
:meth:`Monitor.log_loss`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descend.monitor import stats
from descend.monitor.sinks import Sink, as_sinks
from descend.optim.accumulate import Accumulate

# What each tag means (the names are the same in every sink and adapter).
METRICS = {
    "lr": "learning rate of the group at this step",
    "grad_norm": "‖g‖ of the gradient the optimizer used (after clipping)",
    "grad_norm_preclip": "‖g‖ of the gradient backward produced (before clipping)",
    "clipped": "1 when clipping shrank the gradient at this step, else 0",
    "update_norm": "‖u‖, u = θ_before − θ_after",
    "weight_norm": "‖θ‖ before the step",
    "update_ratio": "‖u‖/‖θ‖ (healthy training sits near 1e-3)",
    "momentum_cos": "cosine between the momentum buffer (after the step) and the gradient",
    "opposed_frac": "fraction of coordinates the step moved uphill (u·g < 0)",
    "eff_lr_p10": "10th percentile of the per-coordinate effective lr (adaptive methods)",
    "eff_lr_p50": "median per-coordinate effective lr γ·(preconditioner)",
    "eff_lr_p90": "90th percentile of the per-coordinate effective lr",
    "v_hat_p10": "10th percentile of the (bias-corrected) second moment",
    "v_hat_p50": "median (bias-corrected) second moment",
    "v_hat_p90": "90th percentile of the (bias-corrected) second moment",
    "v_bias_correction": "1/(1 − β₂ᵗ), the factor Adam's bias correction puts on v",
    "skipped_steps": "steps skipped so far for non-finite gradients (nonfinite='skip')",
    "nonfinite": "1 when the gradient held NaN or Inf at this step",
    "micro_batches": "backward passes that made this step's gradient",
    "gns_g2": "estimate of |G|² (true gradient's squared norm) from the micro-batches",
    "gns_trace": "estimate of tr(Σ)/B_small from the micro-batches",
    "noise_scale": "B_simple = tr(Σ)/|G|² from running means of gns_trace and gns_g2",
    "loss": "the training loss given to log_loss",
}

LAYER_METRICS = ("update_ratio", "grad_norm", "eff_lr_p50")
LOSS_BUFFER = 256  # losses held by Monitor.log_loss before they are written


def _names(model: nn.Module | None, optimizer: torch.optim.Optimizer) -> dict[int, str]:
    names: dict[int, str] = {}
    if model is not None:
        for name, p in model.named_parameters(remove_duplicate=True):
            names.setdefault(id(p), name)
    for gi, group in enumerate(optimizer.param_groups):
        for pi, p in enumerate(group["params"]):
            names.setdefault(id(p), f"group{gi}.param{pi}")
    return names


class Monitor:
    """Watch ``optimizer`` (any ``torch.optim.Optimizer``, descend's or torch's, or one wrapped
    in :class:`~descend.optim.accumulate.Accumulate`) every ``every`` steps.

    Args:
        optimizer: the optimizer whose steps are watched.
        model: the module, for the layer names (``layer/0.weight/...``); without it parameters
            are named ``group<i>.param<j>``.
        every: sample one optimizer step in ``every`` (steps 1, every + 1, …).
        log: where to write: a sink (:mod:`descend.monitor.sinks`), a list of them, or a
            string — ``*.jsonl`` (the monitor log), ``*.csv``, ``mlflow`` / ``mlflow:URI``, or
            any other path as a TensorBoard run directory. ``None`` keeps the rows in memory
            only (:meth:`frame`).
        layers: also write the per-layer metrics (:data:`LAYER_METRICS`).
        batch_size: samples per micro-batch; the noise scale is then in samples, else in
            micro-batches.
        source: ``"auto"`` (descend's trace hook where the chain runs anyway — ``fused=False``
            or a free ``from_chain`` chain — else the optimizer state, which keeps descend's
            fast kernels running), ``"trace"`` or ``"state"``.
        histogram_every: sinks that draw histograms (TensorBoard) get the per-layer updates,
            gradients and effective lrs on every this-many-th sampled step (0, the default:
            never; each histogram costs ~1 ms, three per layer).
        noise_beta: the EMA factor, over sampled steps, of the two noise-scale estimates.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        model: nn.Module | None = None,
        *,
        every: int = 10,
        log: Any = None,
        layers: bool = True,
        batch_size: int | None = None,
        source: str = "auto",
        histogram_every: int = 0,
        noise_beta: float = 0.9,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        for name, value in (("every", every), ("histogram_every", histogram_every + 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                shown = value if name == "every" else histogram_every
                low = 1 if name == "every" else 0
                raise ValueError(f"{name} must be an integer >= {low}, got {shown!r}")
        if source not in ("auto", "trace", "state"):
            raise ValueError(f"source must be 'auto', 'trace' or 'state', got {source!r}")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
        if not 0 <= noise_beta < 1:
            raise ValueError(f"noise_beta must be in [0, 1), got {noise_beta!r}")
        from descend.optim.base import ChainOptimizer

        self.base = optimizer.optimizer if isinstance(optimizer, Accumulate) else optimizer
        self._average = isinstance(optimizer, Accumulate) and optimizer.average
        from descend.optim.base import FromChain

        traceable = isinstance(self.base, ChainOptimizer)
        if source == "trace" and not traceable:
            raise ValueError(
                f"source='trace' needs a descend optimizer; {type(self.base).__name__} has no "
                "trace hook (use 'state' or 'auto')"
            )
        # auto: trace where the chain runs anyway (fused=False) or where only the chain knows
        # its state (a free from_chain chain); elsewhere read the state, so the fast kernels
        # keep running and a monitored run is bit for bit the unmonitored one.
        chain_anyway = traceable and (self.base.fused is False or isinstance(self.base, FromChain))
        self.use_trace = source == "trace" or (source == "auto" and chain_anyway)
        self.every = every
        self.layers = layers
        self.batch_size = batch_size
        self.histogram_every = histogram_every
        self.noise_beta = noise_beta
        self.sinks: list[Sink] = as_sinks(log)
        self.names = _names(model, self.base)
        self.steps = 0  # optimizer updates seen
        self.samples = 0  # sampled steps written
        self._rows: list[dict[str, float]] = []  # everything written, with "step"
        self._losses: list[tuple[int, Any]] = []  # log_loss values not yet written
        self._noise = [0.0, 0.0]  # EMAs of gns_trace and gns_g2 (bias cancels in the ratio)
        self._armed: list[Any] = []
        self._micro: dict[int, list[Any]] = {}
        self._records: dict[int, dict[str, list[torch.Tensor]]] = {}
        self._pending: dict[str, Any] | None = None
        self._flats: dict[int, tuple] = {}
        self._closed = False
        self._handles = [
            self.base.register_step_pre_hook(self._before),
            self.base.register_step_post_hook(self._after),
        ]
        self._arm()  # step 1 is sampled

    # --- sampling --------------------------------------------------------------------------------
    def sampled(self, step: int) -> bool:
        """Whether optimizer step ``step`` (1-based) is one the monitor measures."""
        return (step - 1) % self.every == 0

    def _params(self) -> list[tuple[int, torch.Tensor]]:
        return [
            (gi, p)
            for gi, group in enumerate(self.base.param_groups)
            for p in group["params"]
            if p.requires_grad
        ]

    def _arm(self) -> None:
        """Hooks for the next step's backward passes (and its chain trace) only."""
        self._micro = {}
        for _, p in self._params():
            self._armed.append(p.register_hook(self._grad_hook(p)))
        if self.use_trace:
            self._records = {}
            self._armed.append(self.base.register_trace_hook(self._trace))

    def _disarm(self) -> None:
        for handle in self._armed:
            handle.remove()
        self._armed = []

    def _grad_hook(self, p: torch.Tensor):
        key = id(p)

        def hook(grad: torch.Tensor) -> None:
            with torch.no_grad():
                entry = self._micro.get(key)
                flat = grad.detach().reshape(-1)
                sq = torch.dot(flat, flat)
                if entry is None:
                    # Keep a reference only: autograd may make this very tensor p.grad and
                    # accumulate the next micro-batch into it, but only after our next call.
                    self._micro[key] = [1, [sq], grad.detach(), False]
                    return
                entry[0] += 1
                entry[1].append(sq)
                if entry[3]:
                    entry[2].add_(grad)
                else:
                    entry[2] = entry[2] + grad  # our own copy from the second pass on
                    entry[3] = True

        return hook

    def _trace(self, opt: Any, index: int, record: dict[str, list[torch.Tensor]]) -> None:
        self._records[index] = record

    # --- the step ---------------------------------------------------------------------------------
    def _before(self, *_: Any) -> None:
        if not self.sampled(self.steps + 1):
            return
        # Every trainable parameter: with a closure (Lightning) backward runs inside step(),
        # after this hook, so which ones get a gradient is known only afterwards.
        params = self._params()
        self._pending = {
            "params": params,
            "before": stats.flat([p for _, p in params]),
            "lr": [float(g["lr"]) for g in self.base.param_groups],
        }

    def _after(self, *_: Any) -> None:
        self.steps += 1
        step = self.steps
        if self.sampled(step):
            self._disarm()
            if self._pending is not None:
                self._measure(step, self._pending)
            self._pending = None
        if self.sampled(step + 1) and not self._closed:
            self._arm()

    def _internals(self, params: list[tuple[int, torch.Tensor]]):
        """Per parameter: (momentum, v̂, effective lr) tensors or None, and whether the step
        actually ran (a step skipped for non-finite gradients has no trace)."""
        n = len(params)
        mom: list[Any] = [None] * n
        vhat: list[Any] = [None] * n
        eff: list[Any] = [None] * n
        self._flats = {}  # group -> (momentum, v̂, eff) flat vectors, state path only
        if self.use_trace:
            position = {id(p): j for j, (_, p) in enumerate(params)}
            for gi, record in self._records.items():
                group = self.base.param_groups[gi]
                stepped = [p for p in group["params"] if p.grad is not None]
                m = record.get("m", record.get("velocity"))
                v = record.get("v_hat", record.get("v", record.get("sum")))
                adaptive = "denom" in record
                for i, p in enumerate(stepped):
                    j = position.get(id(p))
                    if j is None:
                        continue
                    if m is not None:
                        mom[j] = m[i]
                    if v is not None:
                        vhat[j] = v[i]
                    if adaptive and "lr_eff" in record:
                        eff[j] = record["lr_eff"][i]
            return mom, vhat, eff
        from descend.train.metrics import _param_eff_lr

        # One group at a time on the concatenated state (the formulas are elementwise and a
        # group's parameters share their step), then split back into per-parameter views:
        # a handful of tensor operations per group instead of per parameter.
        index = 0
        while index < n:
            gi = params[index][0]
            members = []
            while index < n and params[index][0] == gi:
                members.append(index)
                index += 1
            group = self.base.param_groups[gi]
            states = [self.base.state.get(params[j][1]) or {} for j in members]
            keys = set(states[0])
            if not keys or any(set(st) != keys for st in states):
                continue
            steps = {float(st["step"]) for st in states if "step" in st}
            if len(steps) > 1:
                continue
            merged: dict[str, Any] = {
                k: torch.cat([st[k].detach().reshape(-1) for st in states])
                for k in keys
                if k != "step" and torch.is_tensor(states[0][k]) and states[0][k].dim() > 0
            }
            if steps:
                merged["step"] = steps.pop()
            if "mu_product" in keys:
                merged["mu_product"] = states[0]["mu_product"]
            sizes = [params[j][1].numel() for j in members]
            if sum(sizes) != next((v.numel() for v in merged.values() if torch.is_tensor(v)), 0):
                continue

            def spread(vector, out, members=members, sizes=sizes):
                if vector is not None:
                    for j, part in zip(members, vector.split(sizes)):
                        out[j] = part

            m = merged.get("exp_avg", merged.get("momentum_buffer"))
            if "exp_avg_sq" in merged and "betas" in group:
                t = float(merged.get("step", 1))
                v = merged["exp_avg_sq"] / (1 - float(group["betas"][1]) ** t)
            else:
                v = merged.get("square_avg", merged.get("sum"))
            e = _param_eff_lr(group, merged)
            for vector, out in ((m, mom), (v, vhat), (e, eff)):
                spread(vector, out)
            # the group's flat vectors, kept whole for the sums and quantiles (no re-cat)
            self._flats[gi] = (members[0], members[-1] + 1, m, v, e)
        return mom, vhat, eff

    def _whole(self, slot: int, span: tuple[int, int], partial: bool = False):
        """The flat vector ``slot`` (2 momentum, 3 v̂, 4 eff) over the parameters ``span``
        from the groups' vectors :meth:`_internals` kept, or None where they do not tile the
        span (with ``partial``, groups without that vector are left out, as the per-parameter
        path leaves out parameters without it)."""
        parts, at = [], span[0]
        for first, end, *vectors in sorted(self._flats.values(), key=lambda f: f[0]):
            if end <= span[0] or first >= span[1]:
                continue
            if first != at or end > span[1]:
                return None
            vector = vectors[slot - 2]
            if vector is None and not partial:
                return None
            if vector is not None:
                parts.append(vector)
            at = end
        if at != span[1] or not parts:
            return None
        if len(parts) == 1:
            return parts[0] if parts[0].dtype == torch.float32 else parts[0].float()
        return stats.flat(parts)

    def _measure(self, step: int, pending: dict[str, Any]) -> None:
        params, before = pending["params"], pending["before"]
        keep = [p.grad is not None for _, p in params]
        if not all(keep):
            parts = before.split([p.numel() for _, p in params])
            before = stats.flat([t for t, k in zip(parts, keep) if k])
            params = [pair for pair, k in zip(params, keep) if k]
        out: dict[str, float] = {}
        groups = self.base.param_groups
        for gi, lr in enumerate(pending["lr"]):
            out[f"opt/group{gi}/lr"] = lr
            bc = self._v_bias_correction(gi)
            if bc is not None:
                out[f"opt/group{gi}/v_bias_correction"] = bc
        if not params:
            self._emit(step, out)
            return
        tensors = [p for _, p in params]
        mom, vhat, eff = self._internals(params)
        grads = stats.flat([p.grad for p in tensors])
        after = stats.flat(tensors)
        momentum = self._whole(2, (0, len(params)))
        if momentum is None and any(m is not None for m in mom):
            momentum = stats.flat(
                [m if m is not None else torch.zeros_like(p) for m, p in zip(mom, tensors)]
            )
        lengths = [p.numel() for p in tensors]
        several = len(groups) > 1
        scopes: list[tuple[str, list[int]]] = [("opt/", list(range(len(params))))]
        if several:
            for gi in range(len(groups)):
                members = [j for j, (g, _) in enumerate(params) if g == gi]
                if members:  # consecutive: params are listed group by group
                    scopes.append((f"opt/group{gi}/", members))
        spans = [(members[0], members[-1] + 1) for _, members in scopes]
        rows, totals = stats.param_sums(before, after, grads, momentum, lengths, spans)
        for (prefix, members), total in zip(scopes, totals):
            for key, value in stats.combine([total]).items():
                out[prefix + key] = value
            span = (members[0], members[-1] + 1)
            for name, parts, slot in (("eff_lr", eff, 4), ("v_hat", vhat, 3)):
                chosen = [parts[j] for j in members if parts[j] is not None]
                if chosen:
                    whole = self._whole(slot, span, partial=True)
                    if whole is None:
                        whole = torch.cat([t.detach().reshape(-1).float() for t in chosen])
                    sample = stats.sample(whole)
                    qs = stats.quantiles(sample)
                    for q, value in zip(("p10", "p50", "p90"), qs):
                        out[f"{prefix}{name}_{q}"] = value
        self._clip_and_noise(out, params)
        skipped = getattr(self.base, "skipped_steps", None)
        if isinstance(skipped, int):
            out["opt/skipped_steps"] = float(skipped)
        if self.layers:
            for j, (_, p) in enumerate(params):
                name = self.names.get(id(p), f"param{j}")
                r = stats.combine([rows[j]])
                out[f"layer/{name}/update_ratio"] = r["update_ratio"]
                out[f"layer/{name}/grad_norm"] = r["grad_norm"]
                if eff[j] is not None:
                    out[f"layer/{name}/eff_lr_p50"] = stats.quantiles(
                        stats.sample(eff[j].detach().float(), stats.LAYER_SAMPLE), (0.5,)
                    )[0]
        self._emit(step, out)
        if self.histogram_every and self.samples % self.histogram_every == 0:
            hist_sinks = [s for s in self.sinks if hasattr(s, "write_histograms")]
            if hist_sinks:
                u = before - after
                hists: dict[str, torch.Tensor] = {}
                offset = 0
                for j, (_, p) in enumerate(params):
                    name = self.names.get(id(p), f"param{j}")
                    n = lengths[j]
                    hists[f"layer/{name}/update"] = u[offset : offset + n]
                    hists[f"layer/{name}/grad"] = grads[offset : offset + n]
                    if eff[j] is not None:
                        hists[f"layer/{name}/eff_lr"] = eff[j].detach().reshape(-1)
                    offset += n
                for sink in hist_sinks:
                    sink.write_histograms(step, hists)
        self.samples += 1

    def _v_bias_correction(self, gi: int) -> float | None:
        group = self.base.param_groups[gi]
        betas = group.get("betas")
        if not betas or len(betas) < 2:
            return None
        bc = group.get("bias_correction", True)
        if isinstance(bc, tuple | list):
            bc = bc[1]
        if not bc:
            return None
        for p in group["params"]:
            state = self.base.state.get(p)
            if state and "step" in state:
                t = float(state["step"])
                b2 = float(betas[1])
                return 1.0 / (1.0 - b2**t) if t > 0 and b2 < 1 else None
        return None

    def _clip_and_noise(self, out: dict[str, float], params) -> None:
        entries = [self._micro[id(p)] for _, p in params if id(p) in self._micro]
        if not entries:
            return
        k = max(e[0] for e in entries)
        if k == 1:  # one backward: ‖g‖² of each parameter is its one micro-batch's
            total_sq = micro_sq = float(torch.stack([e[1][0] for e in entries]).sum())
        else:
            sums = torch.stack([e[2].float().pow(2).sum() if e[3] else e[1][0] for e in entries])
            micro = torch.stack([torch.stack(e[1]).sum() for e in entries])
            total_sq, micro_sq = float(sums.sum()), float(micro.sum())
        scale = 1.0 / k if self._average and k > 1 else 1.0
        pre = math.sqrt(total_sq) * scale
        out["opt/grad_norm_preclip"] = pre
        used = out.get("opt/grad_norm", math.nan)
        out["opt/clipped"] = float(used < pre * (1 - 1e-4))
        out["opt/micro_batches"] = float(k)
        parts = stats.noise_scale_parts([micro_sq], total_sq, k)
        if parts is not None:
            g2, trace = parts
            out["opt/gns_g2"], out["opt/gns_trace"] = g2, trace
            b = self.noise_beta
            self._noise = [b * self._noise[0] + (1 - b) * trace, b * self._noise[1] + (1 - b) * g2]
            if self._noise[1] > 0:
                unit = self.batch_size or 1
                out["opt/noise_scale"] = unit * self._noise[0] / self._noise[1]

    # --- writing ----------------------------------------------------------------------------------
    @property
    def rows(self) -> list[dict[str, float]]:
        """Everything written so far, one dict per write with its ``"step"``."""
        self.flush_losses()
        return self._rows

    def _emit(self, step: int, scalars: dict[str, float]) -> None:
        self.flush_losses()  # the sinks get every write in the order it was made
        self._write(step, scalars)

    def _write(self, step: int, scalars: dict[str, float]) -> None:
        self._rows.append({"step": step, **scalars})
        for sink in self.sinks:
            sink.write(step, scalars)

    def log_loss(self, loss: Any, step: int | None = None) -> None:
        """Record the training loss of the step just taken (call after ``optimizer.step()``);
        ``step`` defaults to the number of optimizer steps so far.

        A tensor is kept (detached) and read with the others in one ``tolist`` when the
        next sampled step, :meth:`log`, :attr:`rows`, :meth:`frame` or :meth:`close` writes,
        or after :data:`LOSS_BUFFER` losses: one host read per batch instead of one per step
        (no device sync per step on a GPU), and ~1 µs per step on the training thread."""
        at = self.steps if step is None else int(step)
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ValueError(
                    f"loss must hold one value, got a tensor of shape {tuple(loss.shape)}"
                )
            value: Any = loss.detach()
        else:
            value = float(loss)
        self._losses.append((at, value))
        if len(self._losses) >= LOSS_BUFFER:
            self.flush_losses()

    def flush_losses(self) -> None:
        """Write the losses :meth:`log_loss` holds."""
        if not self._losses:
            return
        held, self._losses = self._losses, []
        tensors = [v for _, v in held if isinstance(v, torch.Tensor)]
        if tensors:
            try:
                read = iter(torch.stack([t.reshape(()) for t in tensors]).double().tolist())
            except (RuntimeError, TypeError):  # mixed devices or dtypes: one by one
                read = iter([float(t) for t in tensors])
        for at, v in held:
            self._write(at, {"loss": next(read) if isinstance(v, torch.Tensor) else v})

    def log(self, scalars: dict[str, float], step: int | None = None) -> None:
        """Write any other scalars (e.g. ``val_loss``) to the same sinks."""
        self._emit(
            self.steps if step is None else int(step), {k: float(v) for k, v in scalars.items()}
        )

    def frame(self):
        """Everything written so far as a pandas DataFrame, one row per step (NaN = not
        measured at that step)."""
        import pandas as pd

        if not self.rows:
            return pd.DataFrame({"step": []})
        frame = pd.DataFrame(self.rows).groupby("step", sort=True).first().reset_index()
        return frame

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`frame` to ``path`` (a CSV that ``descend diagnose`` reads)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame().to_csv(path, index=False)
        return path

    def close(self) -> None:
        """Remove every hook and flush and close the sinks (idempotent)."""
        if self._closed:
            return
        self.flush_losses()
        self._closed = True
        self._disarm()
        for handle in self._handles:
            handle.remove()
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def monitor(
    optimizer: torch.optim.Optimizer,
    model: nn.Module | None = None,
    *,
    every: int = 10,
    log: Any = None,
    **options: Any,
) -> Monitor:
    """Attach a :class:`Monitor` to ``optimizer`` in one line::

    mon = monitor(opt, model, every=10, log="runs/exp1")    # TensorBoard
    for x, y in loader:
        ...; opt.step(); mon.log_loss(loss)
    mon.close()
    """
    return Monitor(optimizer, model, every=every, log=log, **options)
