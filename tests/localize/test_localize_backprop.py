"""Backprop (gradient saliency): finite differences, batching, any head."""

from __future__ import annotations

import pytest
import torch

from wsol.localize import Backprop

from .nets import FCHeadNet, GapNet, images, make


def _logit(net, x, b, c):
    with torch.no_grad():
        return net(x)[b, c].item()


@pytest.mark.parametrize("cls", [GapNet, FCHeadNet])
def test_backprop_equals_finite_differences(cls):
    net = make(cls).eval()
    x = images(2)
    classes = torch.tensor([[1, 3], [0, 0]])
    maps = Backprop()(net, x, None, classes)
    assert maps.shape == (2, 2, 8, 8) and maps.dtype == torch.float32
    eps = 1e-6
    for b, j, i, k in [(0, 0, 0, 0), (0, 1, 3, 5), (1, 0, 7, 2), (1, 1, 4, 4), (0, 0, 6, 7)]:
        c = int(classes[b, j])
        diffs = []
        for ch in range(3):
            xp, xm = x.clone(), x.clone()
            xp[b, ch, i, k] += eps
            xm[b, ch, i, k] -= eps
            diffs.append((_logit(net, xp, b, c) - _logit(net, xm, b, c)) / (2 * eps))
        expected = max(abs(d) for d in diffs)
        assert maps[b, j, i, k].item() == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_backprop_uses_logits_not_softmax_and_the_right_image():
    """Each copy's gradient is its own image's and its own class's (no mixing in the sum)."""
    net = make(GapNet).eval()
    x = images(3)
    classes = torch.tensor([[0, 1, 2], [3, 3, 1], [2, 0, 0]])
    maps = Backprop()(net, x, None, classes)
    for b in range(3):
        for j in range(3):
            xb = x[b : b + 1].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(net(xb)[0, classes[b, j]], xb)
            torch.testing.assert_close(maps[b, j], g[0].abs().amax(0).float())


@pytest.mark.parametrize("max_batch", [1, 2, 64])
def test_backprop_batched_equals_class_by_class(max_batch):
    net = make(FCHeadNet)
    net.train()  # the localizer evaluates in eval mode whatever the caller's mode
    x = images(3)
    classes = torch.tensor([[2, 2, 0, 1], [1, 3, 0, 2], [0, 1, 2, 3]])
    maps = Backprop(max_batch=max_batch)(net, x, None, classes)
    per_class = torch.stack(
        [Backprop()(net, x, None, classes[:, j : j + 1])[:, 0] for j in range(4)], 1
    )
    torch.testing.assert_close(maps, per_class, rtol=1e-6, atol=1e-9)
    per_image = torch.cat(
        [Backprop()(net, x[b : b + 1], None, classes[b : b + 1]) for b in range(3)]
    )
    torch.testing.assert_close(maps, per_image, rtol=1e-6, atol=1e-9)
    assert torch.equal(maps[0, 0], maps[0, 1])  # a repeated class: the same map
    assert net.training


def test_backprop_tiny_gap_float32():
    from wsol.models import build_model

    torch.manual_seed(0)
    net = build_model("tiny_gap", num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    classes = torch.tensor([[4, 1, 0], [2, 2, 3]])
    maps = Backprop()(net, x, None, classes)
    assert maps.shape == (2, 3, 32, 32) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.amax() > 0


def test_backprop_needs_grad_flags():
    loc = Backprop()
    assert loc.needs_grad and loc.needs_network and loc.name == "backprop"
    from wsol.errors import WSOLError

    with pytest.raises(WSOLError):
        Backprop(max_batch=0)
