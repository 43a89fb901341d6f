"""Gradient localizers leave no trace: hooks removed, train/eval flags, requires_grad and
.grad put back, after use and after an exception inside the network's forward."""

from __future__ import annotations

import pytest
import torch

from wsol.localize import Backprop, GradCAM
from wsol.localize.hooks import forward_hook, frozen_for_grad

from .nets import (
    DEVICES,
    Boom,
    FCHeadNet,
    GapNet,
    assert_same_state,
    features_of,
    hooks_left,
    images,
    make,
    mixed_state,
    snapshot,
    tripwires,
)

LOCALIZERS = {
    "gradcam": lambda: GradCAM(),
    "gradcam_layer": lambda: GradCAM("features.3"),
    "gradcam_head_layer": lambda: GradCAM("head.0"),
    "backprop": lambda: Backprop(max_batch=2),
}


@pytest.mark.parametrize("name", sorted(LOCALIZERS))
@pytest.mark.parametrize("cls", [GapNet, FCHeadNet])
def test_state_restored_after_use(name, cls):
    if name == "gradcam_head_layer" and cls is GapNet:
        pytest.skip("the GAP head has no 4-D layer")
    net = make(cls)
    x = images(3)
    f = features_of(net, x)
    mixed_state(net)
    before = snapshot(net)
    maps = LOCALIZERS[name]()(net, x, f, torch.tensor([[0, 1], [2, 2], [3, 0]]))
    assert torch.isfinite(maps).all()
    assert not hooks_left(net)
    assert_same_state(before, net)
    assert not maps.requires_grad


@pytest.mark.parametrize("name", sorted(LOCALIZERS))
@pytest.mark.parametrize("where", [0, -1])  # the tripwire after the features, or in the head
def test_state_restored_after_an_exception_in_forward(name, where):
    net = make(FCHeadNet)
    x = images(3)
    f = features_of(net, x)
    mixed_state(net)
    before = snapshot(net)
    wire = tripwires(net)[where]
    wire.armed = True
    with pytest.raises(Boom):
        # a tripwire in the features only runs when the localizer computes them
        LOCALIZERS[name]()(
            net, x, f if where == -1 else None, torch.tensor([[0, 1], [2, 2], [3, 0]])
        )
    wire.armed = False
    assert not hooks_left(net)
    assert_same_state(before, net)


def test_frozen_for_grad_restores_per_module_flags_on_error():
    net = make(GapNet)
    mixed_state(net)
    before = snapshot(net)
    with pytest.raises(Boom), frozen_for_grad(net):
        assert not net.training and not any(m.training for m in net.modules())
        assert not any(p.requires_grad for p in net.parameters())
        raise Boom()
    assert_same_state(before, net)


def test_forward_hook_removed_on_error():
    net = make(GapNet)
    with pytest.raises(Boom), forward_hook(net.features[0], lambda *a: None):
        assert hooks_left(net) == ["features.0._forward_hooks"]
        raise Boom()
    assert not hooks_left(net)


@pytest.mark.parametrize("device", DEVICES)
def test_maps_on_the_models_device(device):
    from wsol.localize import CenterGaussian, FullImage

    net = make(FCHeadNet, dtype=torch.float32).to(device).eval()
    x = images(2, dtype=torch.float32).to(device)
    f = features_of(net, x)
    classes = torch.tensor([[0, 1], [2, 2]], device=device)
    for loc in (
        GradCAM(),
        GradCAM("features.3"),
        Backprop(),
        CenterGaussian(size=16),
        FullImage(size=16),
    ):
        maps = loc(net, x, f, classes)
        assert maps.device.type == device and maps.dtype == torch.float32
    assert CenterGaussian(size=16)(None, None, None, classes).device.type == device
