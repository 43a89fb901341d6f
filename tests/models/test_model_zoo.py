"""The networks of the zoo: map resolution at the paper's input size, a forward and
backward pass of every network with both pools, the CAM identity, and the surgery."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo_cases import CAM_NETWORKS, EXPECTED, FC_NETWORKS, NETWORKS, TORCHVISION

from wsol.models import PooledLinearHead, available, build_model
from wsol.models.registry import weight_sources

SMALL = 64  # every network runs at 64x64 (the AlexNets' maps are 3x3, NIN's 1x1)


def test_every_registered_network_has_a_case():
    assert set(NETWORKS) == set(available())
    assert set(TORCHVISION) == set(weight_sources())
    for name, source in weight_sources().items():
        assert TORCHVISION[name][0] == source.arch, name


@pytest.mark.parametrize("name", NETWORKS)
def test_resolution_at_paper_input_size(name):
    size, channels, h = EXPECTED[name]
    net = build_model(name, num_classes=1000, pool="avg").eval()
    assert net.input_size == net.default_input_size == size
    with torch.no_grad():
        f = net.forward_features(torch.randn(1, 3, size, size))
        logits = net.forward_head(f)
        assert f.shape == (1, channels or 1000, h, h)
        assert logits.shape == (1, 1000)
        if net.has_cam:
            maps = net.cam(f, torch.tensor([[3, 999]]))
            assert maps.shape == (1, 2, h, h)


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("name", NETWORKS)
def test_forward_backward_small_input(name, pool):
    torch.manual_seed(0)
    net = build_model(name, num_classes=5, pool=pool).train()
    assert net.pool == (pool if name not in FC_NETWORKS else None)
    x = torch.randn(2, 3, SMALL, SMALL, requires_grad=True)
    logits = net(x)
    assert logits.shape == (2, 5)
    nn.functional.cross_entropy(logits, torch.tensor([0, 4])).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", CAM_NETWORKS)
def test_cam_mean_plus_bias_is_the_logit(name):
    torch.manual_seed(0)
    net = build_model(name, num_classes=6, pool="avg").double().eval()
    assert net.has_cam and isinstance(net.head, PooledLinearHead)
    x = torch.randn(2, 3, SMALL, SMALL, dtype=torch.float64)
    with torch.no_grad():
        f = net.forward_features(x)
        logits = net.forward_head(f)
        classes = torch.arange(6).repeat(2, 1)
        maps = net.cam(f, classes)
        bias = net.head.bias(classes).double()
    assert maps.shape[:2] == (2, 6) and maps.shape[2:] == f.shape[2:]
    torch.testing.assert_close(maps.mean(dim=(2, 3)) + bias, logits, rtol=0, atol=1e-9)


def test_nin_cam_is_the_class_channel():
    torch.manual_seed(0)
    net = build_model("nin", num_classes=4, pool="max").eval()
    assert net.head.fc is None and net.has_cam
    with torch.no_grad():
        f = net.forward_features(torch.randn(1, 3, 96, 96))
        maps = net.cam(f, torch.tensor([[2, 0]]))
        assert torch.equal(maps[0, 0], f[0, 2]) and torch.equal(maps[0, 1], f[0, 0])
        assert torch.equal(net.forward_head(f), f.amax(dim=(2, 3)))


@pytest.mark.parametrize("name", FC_NETWORKS)
def test_fc_networks_have_no_cam(name):
    net = build_model(name, num_classes=10, pool="max")
    assert not net.has_cam and net.pool is None
    assert net.gradcam_layer is net.features
    assert net.head.classifier[-1].out_features == 10
    with pytest.raises(TypeError, match="gradcam"):
        net.cam(torch.zeros(1, 256, 3, 3), torch.zeros(1, 1, dtype=torch.long))
    # the last conv maps end with a ReLU and pool5 belongs to the head
    assert isinstance(net.features[-1], nn.ReLU)
    assert isinstance(net.head.pool5, nn.MaxPool2d)


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_surgery_matches_the_papers():
    # VGG16-GAP: 13 convs of VGG16 (up to conv5_3 = features.28) + a 3x3/1 pad-1 conv of 1024
    net = build_model("vgg16_gap", num_classes=3)
    convs = _convs(net.features)
    assert len(convs) == 14 and net.features[28] is convs[12]
    assert net.features.cam_conv.kernel_size == (3, 3) and net.features.cam_conv.padding == (1, 1)
    assert net.features.cam_conv.out_channels == 1024 and isinstance(net.features[-1], nn.ReLU)
    assert "30" not in net.features._modules  # pool5 removed
    # AlexNet-GAP: 5 convs + 1024 conv; AlexNet*-GAP: 4 convs + conv5 384 + 3x3/1 pool + 2 x 512
    net = build_model("alexnet_gap", num_classes=3)
    assert [c.out_channels for c in _convs(net.features)] == [64, 192, 384, 256, 256, 1024]
    net = build_model("alexnet_star_gap", num_classes=3)
    assert [c.out_channels for c in _convs(net.features)] == [64, 192, 384, 256, 384, 512, 512]
    pool5 = net.features.pool5
    assert (pool5.kernel_size, pool5.stride, pool5.padding) == (3, 1, 0)
    assert "10" not in net.features._modules  # torchvision's conv5 is not kept
    # ResNet-50: layer4 stride 1 in both the 3x3 conv and the shortcut
    net = build_model("resnet50_gap", num_classes=3)
    assert net.features.layer4[0].conv2.stride == (1, 1)
    assert net.features.layer4[0].downsample[0].stride == (1, 1)
    # Inception-v3: wsolevaluation's strides, two 3x3 convs of 1024 after Mixed_6e
    net = build_model("inceptionv3_gap", num_classes=3)
    assert net.features.Conv2d_1a_3x3.conv.padding == (1, 1)
    assert net.features.Mixed_6a.branch3x3.conv.stride == (1, 1)
    assert net.features.Mixed_6a.branch3x3dbl_3.conv.stride == (1, 1)
    assert (net.features.cam_conv1.in_channels, net.features.cam_conv1.out_channels) == (768, 1024)
    assert (net.features.cam_conv2.in_channels, net.features.cam_conv2.out_channels) == (1024, 1024)
    assert "Mixed_7a" not in net.features._modules
    # NIN: 12 convs in 4 mlpconv blocks, the last with one channel per class
    net = build_model("nin", num_classes=7)
    convs = _convs(net.features)
    assert [c.kernel_size[0] for c in convs] == [11, 1, 1, 5, 1, 1, 3, 1, 1, 3, 1, 1]
    assert [c.out_channels for c in convs] == [
        96,
        96,
        96,
        256,
        256,
        256,
        384,
        384,
        384,
        1024,
        1024,
        7,
    ]


def test_fc_networks_ignore_pool():
    a, b = (
        build_model("alexnet", num_classes=4, pool="avg"),
        build_model("alexnet", num_classes=4, pool="max"),
    )
    assert [n for n, _ in a.named_modules()] == [n for n, _ in b.named_modules()]


def test_transform_input_flag_is_taken():
    net = build_model("inceptionv3_gap", num_classes=3, transform_input=True)
    assert net.features.transform_input.enabled
    assert not build_model("inceptionv3_gap", num_classes=3).features.transform_input.enabled
