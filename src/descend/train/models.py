"""Small models for the training lab: logistic regression, an MLP and a CNN for 8×8 digits.

All take flat feature vectors (the CNN reshapes them to images itself) and return class logits
for ``nn.CrossEntropyLoss``. Optional normalisation layers follow the notes' batch-norm section:

``"batch"``  BatchNorm: normalises each feature over the *batch*; needs ≥ 2 samples per batch
             in training (a batch of one raises a ValueError suggesting the others).
``"layer"``  LayerNorm: normalises over the features of *each sample*; batch size free.
``"group"``  GroupNorm: normalises within groups of channels of each sample; batch size free.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NORMS = (None, "batch", "layer", "group")


def _check_norm(norm: str | None) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of None, 'batch', 'layer', 'group'; got {norm!r}")


def _norm_layer(norm: str | None, width: int, *, groups: int, image: bool) -> nn.Module | None:
    if norm is None:
        return None
    if norm == "batch":
        return nn.BatchNorm2d(width) if image else nn.BatchNorm1d(width)
    if norm == "layer":
        # For images, LayerNorm over (C, H, W) is GroupNorm with a single group.
        return nn.GroupNorm(1, width) if image else nn.LayerNorm(width)
    if width % groups:
        raise ValueError(f"groups must divide the layer width {width}, got groups={groups}")
    return nn.GroupNorm(groups, width)


def batch_norm_layers(model: nn.Module) -> list[str]:
    """Names of the BatchNorm modules in ``model``."""
    return [
        name or type(m).__name__
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


def batch_of_one_error(layer: str) -> ValueError:
    """The error for training BatchNorm on a single sample (used by the models and the trainer)."""
    return ValueError(
        f"BatchNorm layer {layer!r} got a batch of 1 sample in training mode: batch statistics "
        "need at least 2 samples. Use norm='layer' (LayerNorm) or norm='group' (GroupNorm), "
        "which normalise each sample on its own, or a batch size >= 2 with drop_last=True so "
        "no final batch of one is left."
    )


def _guard_batch_of_one(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    if module.training and args[0].shape[0] == 1:
        raise batch_of_one_error(getattr(module, "_descend_name", type(module).__name__))


def guard_batch_norm(model: nn.Module) -> nn.Module:
    """Make every BatchNorm of ``model`` raise :func:`batch_of_one_error` on a training batch of 1.

    (BatchNorm1d alone raises torch's terse "Expected more than 1 value per channel"; BatchNorm2d
    silently normalises over the pixels of one image.) Returns ``model``.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m._descend_name = name
            m.register_forward_pre_hook(_guard_batch_of_one)
    return model


def logistic(n_features: int, n_classes: int = 2) -> nn.Module:
    """Multinomial logistic regression: logits = W·x + b."""
    _positive(n_features=n_features, n_classes=n_classes)
    return nn.Linear(n_features, n_classes)


def mlp(
    n_features: int = 1000,
    hidden: Sequence[int] = (100,),
    n_classes: int = 2,
    *,
    norm: str | None = None,
    groups: int = 4,
    dropout: float = 0.0,
) -> nn.Module:
    """Fully connected ReLU network ``n_features → hidden… → n_classes``.

    The default is the notes' cat-vs-dog net 1000 → 100 → 2. Each hidden layer is
    Linear → [norm] → ReLU → [Dropout].
    """
    _check_norm(norm)
    _positive(n_features=n_features, n_classes=n_classes, groups=groups)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        _positive(hidden=int(h))
        layers.append(nn.Linear(width, int(h)))
        layer = _norm_layer(norm, int(h), groups=groups, image=False)
        if layer is not None:
            layers.append(layer)
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, n_classes))
    return guard_batch_norm(nn.Sequential(*layers))


def small_cnn(
    n_classes: int = 10,
    image_shape: tuple[int, int, int] = (1, 8, 8),
    channels: Sequence[int] = (16, 32),
    *,
    norm: str | None = None,
    groups: int = 4,
) -> nn.Module:
    """A small CNN for 8×8 digits: [3×3 conv → [norm] → ReLU] per entry of ``channels``, a
    2×2 max-pool after the first block, global average pooling and a linear classifier.

    It accepts flat inputs of C·H·W features and reshapes them to ``image_shape``.
    """
    _check_norm(norm)
    _positive(n_classes=n_classes, groups=groups)
    c_in, height, width = image_shape
    layers: list[nn.Module] = [nn.Unflatten(1, (c_in, height, width))]
    for i, c in enumerate(channels):
        _positive(channels=int(c))
        layers.append(nn.Conv2d(c_in, int(c), kernel_size=3, padding=1))
        layer = _norm_layer(norm, int(c), groups=groups, image=True)
        if layer is not None:
            layers.append(layer)
        layers.append(nn.ReLU())
        if i == 0:
            layers.append(nn.MaxPool2d(2))
        c_in = int(c)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes)]
    return guard_batch_norm(nn.Sequential(*layers))


def _positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


MODELS = ("logistic", "mlp", "cnn")


def build(name: str, dataset, **options) -> nn.Module:
    """Build model ``name`` (``logistic``, ``mlp`` or ``cnn``) sized for ``dataset``.

    ``options`` go to the model function (``hidden``, ``norm``, ``dropout``, ``channels``…).
    """
    if name == "logistic":
        return logistic(dataset.n_features, dataset.n_classes, **options)
    if name == "mlp":
        return mlp(dataset.n_features, n_classes=dataset.n_classes, **options)
    if name == "cnn":
        if dataset.image_shape is None:
            raise ValueError(
                f"model 'cnn' needs an image task (digits, digits-binary); {dataset.name!r} is "
                "tabular"
            )
        return small_cnn(dataset.n_classes, dataset.image_shape, **options)
    raise ValueError(f"unknown model {name!r}; valid choices: {', '.join(MODELS)}")
