"""Tiny networks for the localizer tests (a few hundred parameters each)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wsol.models.base import PooledLinearHead, WSOLNet


class Boom(Exception):
    """Raised by `Tripwire` when armed."""


class Tripwire(nn.Module):
    """Identity that raises `Boom` while ``armed``."""

    def __init__(self):
        super().__init__()
        self.armed = False

    def forward(self, x):
        if self.armed:
            raise Boom("tripwire")
        return x


def _conv_stack(width: int) -> nn.Sequential:
    """3 -> width channels, stride 2: 8x8 input -> 4x4 maps (ReLU in place, as torchvision)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        Tripwire(),
    )


def _randomize_bn(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


class GapNet(WSOLNet):
    """Conv stack, global average pool, dropout, one linear layer: has a CAM."""

    name = "test_gap"

    def __init__(self, num_classes: int = 4, width: int = 6, dropout: float = 0.5):
        super().__init__()
        self.features = _conv_stack(width)
        self.head = PooledLinearHead(width, num_classes, pool="avg", dropout=dropout)
        _randomize_bn(self)


class FCHeadNet(WSOLNet):
    """Conv stack, then a VGG-like fully connected head (max pool, flatten, two linear
    layers with dropout): no CAM."""

    name = "test_fc"

    def __init__(self, num_classes: int = 4, width: int = 6):
        super().__init__()
        self.features = _conv_stack(width)
        self.head = nn.Sequential(
            nn.MaxPool2d(2),
            Tripwire(),
            nn.Flatten(1),
            nn.Linear(width * 4, 16),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(16, num_classes),
        )
        _randomize_bn(self)


class Residual(nn.Module):
    """``relu(x + conv2(relu(bn(conv1(x)))))``: a layer inside it meets ``x`` after it."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv1(x)))
        return torch.relu(x + self.conv2(y))


class ResidualNet(WSOLNet):
    name = "test_residual"

    def __init__(self, num_classes: int = 4, width: int = 6):
        super().__init__()
        self.features = nn.Sequential(_conv_stack(width), Residual(width))
        self.head = PooledLinearHead(width, num_classes, pool="avg")
        _randomize_bn(self)


class SharedReluNet(WSOLNet):
    """A ReLU module used twice in one forward pass (as in torchvision's Bottleneck)."""

    name = "test_shared"

    def __init__(self, num_classes: int = 4, width: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        )
        self.relu = nn.ReLU()
        self.head = PooledLinearHead(width, num_classes, pool="avg")

    def forward_features(self, x):
        return self.relu(self.features[1](self.relu(self.features[0](x))))


def tripwires(net: nn.Module) -> list[Tripwire]:
    return [m for m in net.modules() if isinstance(m, Tripwire)]


def make(cls, seed: int = 0, dtype=torch.float64, **kw) -> WSOLNet:
    torch.manual_seed(seed)
    return cls(**kw).to(dtype)


def images(b: int = 3, size: int = 8, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, size, size, generator=g, dtype=dtype)


def features_of(net: WSOLNet, x: torch.Tensor) -> torch.Tensor:
    """The evaluation loop's features: eval mode, no grad (the mode put back)."""
    was = net.training
    net.eval()
    with torch.no_grad():
        f = net.forward_features(x)
    net.train(was)
    return f


def hooks_left(net: nn.Module) -> list[str]:
    """Names of modules that still hold a hook of any kind."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [
        f"{name or '<net>'}.{kind}"
        for name, m in net.named_modules()
        for kind in kinds
        if len(getattr(m, kind, {}))
    ]


def snapshot(net: nn.Module) -> dict:
    """Train flags per module, requires_grad and .grad identity per parameter."""
    return {
        "training": {n: m.training for n, m in net.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in net.named_parameters()},
        "grad": {
            n: (None if p.grad is None else (id(p.grad), p.grad.clone()))
            for n, p in net.named_parameters()
        },
    }


def assert_same_state(before: dict, net: nn.Module) -> None:
    after = snapshot(net)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    for name, g in before["grad"].items():
        now = after["grad"][name]
        if g is None:
            assert now is None, f"{name}.grad was set"
        else:
            assert now is not None and now[0] == g[0], f"{name}.grad was replaced"
            assert torch.equal(now[1], g[1]), f"{name}.grad was modified"


def mixed_state(net: nn.Module) -> None:
    """Train mode with one module in eval, one frozen parameter, one preset .grad."""
    net.train()
    params = list(net.parameters())
    params[0].requires_grad_(False)
    params[-1].grad = torch.full_like(params[-1], 0.5)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            break


#: the devices a map maker is checked on (the GPU one skipped without a GPU)
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]
