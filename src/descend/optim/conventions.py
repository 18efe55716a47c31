"""Each framework's equations *and* default hyperparameters, per optimizer.

``convention="torch"`` (default) | ``"keras"`` | ``"optax"`` picks a row of the optimizer's
``conventions`` declaration (``descend.optim.declared``); any keyword given explicitly
overrides it. Sources: torch 2.13 ``torch/optim``, Keras 3 ``keras/src/optimizers``, optax
``_src/alias.py`` (see ``shared/reference/conventions.md``). Where a framework has no default
learning rate (optax), torch's is used. An optimizer has rows only for the frameworks that
have it.
"""

from __future__ import annotations

CONVENTIONS = ("torch", "keras", "optax")


def resolve(rows: dict[str, dict], convention: str, given: dict, owner: str = "") -> dict:
    """The row ``convention`` of ``rows`` overridden by the non-None ``given``."""
    if convention not in CONVENTIONS:
        raise ValueError(
            f"convention={convention!r} is not valid; choose one of: {', '.join(CONVENTIONS)}"
        )
    if convention not in rows:
        raise ValueError(
            f"convention={convention!r} is not available for {owner or 'this optimizer'}: "
            f"the frameworks that have it are {', '.join(rows)}"
        )
    out = dict(rows[convention])
    out.update({k: v for k, v in given.items() if v is not None})
    out["convention"] = convention
    return out
