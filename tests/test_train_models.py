"""The lab's models: shapes, sizes, norm layers, and the BatchNorm batch-of-one error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descend import train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread avoids OpenMP stalls when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_default_mlp_is_the_notes_cat_dog_net() -> None:
    net = train.mlp()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1000, 100), (100, 2)]
    # 1000×100 + 100×2 = 100,200 weights (the notes' count) plus 100 + 2 biases.
    assert sum(p.numel() for p in net.parameters()) == 100_200 + 102
    assert net(torch.randn(5, 1000)).shape == (5, 2)


def test_logistic_and_cnn_shapes() -> None:
    ds = train.load("digits")
    assert train.build("logistic", ds)(ds.x_val).shape == (len(ds.y_val), 10)
    cnn = train.build("cnn", ds, norm="group")
    assert cnn(ds.x_val[:7]).shape == (7, 10)
    assert any(isinstance(m, nn.Conv2d) for m in cnn.modules())
    with pytest.raises(ValueError, match="needs an image task"):
        train.build("cnn", train.load("wine"))
    with pytest.raises(
        ValueError, match="unknown model 'resnet'; valid choices: logistic, mlp, cnn"
    ):
        train.build("resnet", ds)


@pytest.mark.parametrize(
    "norm, layer", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm), ("group", nn.GroupNorm)]
)
def test_norm_layers_are_inserted(norm: str, layer: type) -> None:
    net = train.mlp(20, hidden=(8, 8), n_classes=3, norm=norm)
    assert sum(isinstance(m, layer) for m in net.modules()) == 2


@pytest.mark.parametrize(
    "builder", [lambda: train.mlp(6, (4,), norm="batch"), lambda: train.small_cnn(10, norm="batch")]
)
def test_batch_norm_with_a_batch_of_one_explains_the_alternatives(builder) -> None:
    net = builder()
    width = 6 if isinstance(net[0], nn.Linear) else 64
    net.train()
    with pytest.raises(ValueError, match="batch of 1 sample.*LayerNorm.*GroupNorm"):
        net(torch.randn(1, width))
    net.eval()
    assert net(torch.randn(1, width)).shape[0] == 1  # evaluation uses running statistics


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_layer_and_group_norm_train_on_single_samples(norm: str) -> None:
    net = train.mlp(6, (4,), norm=norm, groups=2)
    net.train()
    assert torch.isfinite(net(torch.randn(1, 6))).all()


def test_bad_model_options_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="groups must divide the layer width 10"):
        train.mlp(6, (10,), norm="group", groups=4)
    with pytest.raises(ValueError, match="norm must be one of"):
        train.mlp(6, (4,), norm="instance")
    with pytest.raises(ValueError, match="dropout must be in"):
        train.mlp(6, (4,), dropout=1.0)
