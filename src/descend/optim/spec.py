"""One optimizer-spec syntax for every command, the lab and the web API:
``NAME[:key=value,…]``, e.g. ``adam:lr=0.01,beta2=0.99,convention=keras``."""

from __future__ import annotations

import inspect

from .registry import REGISTRY

# Keywords and group entries that are switches of torch's machinery or of the run, not
# hyperparameters of the update rule (specs, explain, the lab's configs and the web skip them).
NOT_HYPERPARAMETERS = frozenset(
    {"params", "foreach", "differentiable", "capturable", "fused", "process_group"}
)
_SKIP = NOT_HYPERPARAMETERS | {"self"}


def keywords(cls: type) -> list[str]:
    """The keyword names ``cls`` accepts, following ``**kwargs`` into its base classes."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names += [
            n
            for n, p in params.items()
            if n not in _SKIP and n not in names and p.kind != p.VAR_KEYWORD
        ]
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return names


def _parse_value(text: str):
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip()


def _items(rest: str) -> list[str]:
    """``"lr=0.1,betas=(0.9,0.95)"`` or ``"lr=0.1,betas=0.9,0.95"`` → key=value items: commas
    inside parentheses, and a bare number after a value, belong to that value (a tuple)."""
    parts, depth, current = [], 0, ""
    for char in rest:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    items: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if "=" not in part and items and _is_number(part) and "=" in items[-1]:
            items[-1] += "," + part
        else:
            items.append(part)
    return items


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_tuple(text: str):
    """``"(0.9,0.95)"`` / ``"0.9,0.95"`` → (0.9, 0.95); None when ``text`` is not a tuple."""
    body = text.strip()
    if body.startswith("(") and body.endswith(")"):
        body = body[1:-1]
    elif "," not in body:
        return None
    values = [v.strip() for v in body.split(",")]
    if len(values) < 2 or not all(_is_number(v) for v in values):
        return None
    return tuple(float(v) for v in values)


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"adam:lr=0.01,beta2=0.99"`` → ``("adam", {"lr": 0.01, "beta2": 0.99})``.

    Checks the name and the keys (``beta1``/``beta2`` are accepted for ``betas``, and so are
    ``betas=(0.9,0.95)`` and ``betas=0.9,0.95``, the form ``descend optimizers`` shows); values
    are checked by the optimizer itself."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"optimizer spec must be a non-empty string like 'adam:lr=0.01', got {spec!r}"
        )
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(REGISTRY)}")
    cls = REGISTRY[name][0]
    valid = keywords(cls) + (["beta1", "beta2"] if "betas" in keywords(cls) else [])
    kwargs: dict = {}
    for item in _items(rest):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"malformed item {item!r} in optimizer spec {spec!r}: use key=value")
        if key not in valid:
            raise ValueError(
                f"unknown key {key!r} for optimizer {name!r}; valid keys: {', '.join(valid)}"
            )
        pair = _parse_tuple(value)
        if pair is None and ("(" in value or "," in value):
            raise ValueError(
                f"malformed value {value.strip()!r} for {key!r} in optimizer spec {spec!r}: "
                "write a tuple as (0.9,0.95) or 0.9,0.95"
            )
        kwargs[key] = pair if pair is not None else _parse_value(value)
    return name, kwargs


def resolve_kwargs(name: str, kwargs: dict) -> dict:
    """Preset keywords of ``name`` merged with ``kwargs``, ``beta1``/``beta2`` folded into
    ``betas`` (the other beta from the convention's default)."""
    cls, preset = REGISTRY[name][:2]
    out = {**preset, **kwargs}
    b1, b2 = out.pop("beta1", None), out.pop("beta2", None)
    if b1 is not None or b2 is not None:
        rows = getattr(cls, "conventions", {})
        row = rows.get(out.get("convention", "torch"), rows.get("torch", {}))
        base = out.get("betas") or row.get("betas")
        if base is None:
            raise ValueError(f"beta1/beta2 given for {name!r}, which has no betas")
        out["betas"] = (base[0] if b1 is None else b1, base[1] if b2 is None else b2)
    return out


def from_spec(spec: str, params, **overrides):
    """Build the optimizer a spec names: ``from_spec("momentum:lr=0.001", model.parameters())``.
    ``overrides`` win over the spec's values."""
    name, kwargs = parse_spec(spec)
    cls = REGISTRY[name][0]
    return cls(params, **resolve_kwargs(name, {**kwargs, **overrides}))


def available() -> dict[str, dict]:
    """Every spec name with its class, description and default hyperparameters (torch
    convention)."""
    import torch

    out = {}
    dummy = [torch.zeros(1, requires_grad=True)]
    for name, (cls, preset, text, _lab) in REGISTRY.items():
        opt = cls(dummy, **preset)
        defaults = {
            k: v
            for k, v in opt.defaults.items()
            if k not in ("foreach", "differentiable", "capturable", "fused")
        }
        out[name] = {
            "class": cls.__name__,
            "description": text,
            "defaults": defaults,
            "keys": keywords(cls),
        }
    return out
