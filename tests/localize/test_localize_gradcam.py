"""Grad-CAM: the CAM identity, FC heads, named layers, batching, errors."""

from __future__ import annotations

import pytest
import torch

from wsol.errors import WSOLError
from wsol.localize import CAM, GradCAM

from .nets import (
    FCHeadNet,
    GapNet,
    ResidualNet,
    SharedReluNet,
    features_of,
    hooks_left,
    images,
    make,
)


def reference_gradcam(net, x, layer, classes):
    """Grad-CAM of ``layer``'s output, one image and one class at a time (plain autograd)."""
    module = net.get_submodule(layer)
    net.eval()
    out = []
    for b in range(x.shape[0]):
        row = []
        for c in classes[b].tolist():
            store = {}

            def hook(_m, _i, o, store=store):
                store["a"] = o  # the layer's output, kept from in-place ops after the layer
                return o.clone()

            h = module.register_forward_hook(hook)
            try:
                logit = net(x[b : b + 1])[0, c]
            finally:
                h.remove()
            (g,) = torch.autograd.grad(logit, store["a"])
            a = store["a"].detach()
            row.append(torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))[0])
        out.append(torch.stack(row))
    return torch.stack(out).float()


def minmax(m):
    lo = m.amin(dim=(-2, -1), keepdim=True)
    hi = m.amax(dim=(-2, -1), keepdim=True)
    return (m - lo) / (hi - lo)


def test_gradcam_equals_cam_on_a_gap_network():
    net = make(GapNet).eval()
    x = images(3)
    f = features_of(net, x)
    classes = torch.tensor([[0, 1, 3], [2, 2, 0], [3, 1, 2]])
    grad = GradCAM()(net, x, f, classes)
    cam = CAM()(net, x, f, classes)
    h, w = f.shape[2:]
    assert grad.shape == cam.shape == (3, 3, h, w)
    relu_cam = torch.relu(cam)
    # before normalisation: CAM / (h w) where the CAM is positive, 0 elsewhere
    torch.testing.assert_close(grad, relu_cam / (h * w), rtol=1e-5, atol=1e-8)
    pos = cam > 0
    assert pos.any() and (~pos).any()
    torch.testing.assert_close(grad[pos] * (h * w), cam[pos], rtol=1e-5, atol=1e-7)
    assert (grad[~pos] == 0).all()
    # after min-max normalisation: the same map as ReLU(CAM)
    keep = relu_cam.amax(dim=(-2, -1)) > 0
    torch.testing.assert_close(minmax(grad)[keep], minmax(relu_cam)[keep], rtol=1e-4, atol=1e-5)


def test_gradcam_equals_cam_on_tiny_gap():
    from wsol.models import build_model

    torch.manual_seed(0)
    net = build_model("tiny_gap", num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    f = features_of(net, x)
    classes = torch.tensor([[4, 1, 0, 2, 3, 4], [2, 2, 3, 0, 1, 4]])
    grad = GradCAM()(net, x, f, classes)
    cam = CAM()(net, x, f, classes)
    h, w = f.shape[2:]
    assert grad.shape == (2, 6, 4, 4)
    torch.testing.assert_close(grad * (h * w), torch.relu(cam), rtol=1e-4, atol=1e-6)


def test_gradcam_without_features_computes_them():
    net = make(GapNet).eval()
    x = images(2)
    classes = torch.tensor([[0, 1], [2, 3]])
    torch.testing.assert_close(
        GradCAM()(net, x, None, classes), GradCAM()(net, x, features_of(net, x), classes)
    )


def test_gradcam_fc_head_default_layer():
    net = make(FCHeadNet)
    x = images(3)
    f = features_of(net, x)
    classes = torch.tensor([[0, 1, 2], [3, 3, 1], [1, 0, 2]])
    maps = GradCAM()(net, x, f, classes)
    assert maps.shape == (3, 3, *f.shape[2:]) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.amax() > 0
    # the default layer is the features module: naming it gives the same maps
    torch.testing.assert_close(
        maps, reference_gradcam(net, x, "features", classes), rtol=1e-6, atol=1e-9
    )
    torch.testing.assert_close(maps, GradCAM("features")(net, x, None, classes))


@pytest.mark.parametrize("layer", ["features.0", "features.3", "features.1"])
def test_gradcam_fc_head_intermediate_layer(layer):
    """An intermediate layer (each followed by an in-place ReLU or BN) of an FC-head network."""
    net = make(FCHeadNet)
    x = images(3)
    classes = torch.tensor([[0, 1, 2], [3, 3, 1], [1, 0, 2]])
    maps = GradCAM(layer)(net, x, None, classes)
    size = 8 if layer in ("features.0", "features.1") else 4
    assert maps.shape == (3, 3, size, size)
    assert torch.isfinite(maps).all() and (maps >= 0).all() and maps.amax() > 0
    torch.testing.assert_close(
        maps, reference_gradcam(net, x, layer, classes), rtol=1e-6, atol=1e-9
    )


def test_gradcam_layer_in_head_uses_features():
    net = make(FCHeadNet)
    x = images(2)
    classes = torch.tensor([[0, 1], [2, 2]])
    via_head = GradCAM("head.0")(net, x, features_of(net, x), classes)
    via_net = GradCAM("head.0")(net, x, None, classes)
    assert via_head.shape == (2, 2, 2, 2)
    torch.testing.assert_close(via_head, via_net)
    torch.testing.assert_close(
        via_head, reference_gradcam(net, x, "head.0", classes), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize(
    ("layer", "modes"),
    [
        ("features.1.conv1", [False]),  # inside the block: the input is replicated
        ("features.1.bn", [False]),
        ("features.1", [True]),  # the block's output: replicated at the layer
        ("features.0.3", [True]),  # before the block: the block sees replicated rows only
    ],
)
def test_gradcam_residual_layers(layer, modes, monkeypatch):
    """Layers inside a residual block would meet the un-replicated batch after them: the
    place of the layer decides to replicate the input instead, exact anyway."""
    net = make(ResidualNet)
    x = images(3)
    classes = torch.tensor([[0, 1, 2], [3, 3, 1], [1, 0, 2]])
    seen = []
    original = GradCAM._layer_chunk

    def spy(self, run, module, source, r, c, at_layer):
        seen.append(at_layer)
        return original(self, run, module, source, r, c, at_layer)

    monkeypatch.setattr(GradCAM, "_layer_chunk", spy)
    maps = GradCAM(layer)(net, x, None, classes)
    assert seen == modes
    torch.testing.assert_close(
        maps, reference_gradcam(net, x, layer, classes), rtol=1e-6, atol=1e-9
    )
    assert not hooks_left(net)


@pytest.mark.parametrize("layer", [None, "features.3", "features.1.conv1"])
@pytest.mark.parametrize("max_batch", [1, 3, 1000])
def test_gradcam_batched_equals_class_by_class(layer, max_batch):
    net = make(ResidualNet if layer == "features.1.conv1" else FCHeadNet)
    net.train()
    x = images(3)
    f = features_of(net, x)
    classes = torch.tensor([[2, 2, 0, 1], [1, 3, 0, 2], [0, 1, 2, 3]])
    loc = GradCAM(layer, max_batch=max_batch, layer_max_batch=max_batch)
    maps = loc(net, x, f, classes)
    per_class = torch.stack(
        [GradCAM(layer)(net, x, f, classes[:, j : j + 1])[:, 0] for j in range(4)], 1
    )
    torch.testing.assert_close(maps, per_class, rtol=1e-6, atol=1e-9)
    per_image = torch.cat(
        [GradCAM(layer)(net, x[b : b + 1], f[b : b + 1], classes[b : b + 1]) for b in range(3)]
    )
    torch.testing.assert_close(maps, per_image, rtol=1e-6, atol=1e-9)
    assert net.training


def test_gradcam_under_inference_mode():
    """The evaluation loop may run under inference mode: the localizer leaves it."""
    net = make(FCHeadNet).eval()
    x = images(2)
    classes = torch.tensor([[0, 1], [2, 3]])
    expected = GradCAM()(net, x, None, classes), GradCAM("features.0")(net, x, None, classes)
    with torch.inference_mode():
        xi = x.clone()
        fi = net.forward_features(xi)
        got = GradCAM()(net, xi, fi, classes), GradCAM("features.0")(net, xi, fi, classes)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def test_gradcam_layer_errors():
    net = make(FCHeadNet)
    x = images(2)
    classes = torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(WSOLError, match="no module"):
        GradCAM("features.99")(net, x, None, classes)
    with pytest.raises(WSOLError, match=r"\(B, K, h, w\)"):
        GradCAM("head.3")(net, x, None, classes)  # a Linear layer
    assert not hooks_left(net)
    shared = make(SharedReluNet)
    with pytest.raises(WSOLError, match="more than once"):
        GradCAM("relu")(shared, x, None, classes)
    assert not hooks_left(shared)
    with pytest.raises(WSOLError):
        GradCAM(max_batch=0)


def test_gradcam_flags():
    loc = GradCAM()
    assert loc.needs_grad and loc.needs_network and loc.name == "gradcam"
