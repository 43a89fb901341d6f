"""``model.large_feature_map=true`` (wsolevaluation's ``--large_feature_map``): VGG16-GAP
without pool4 and ResNet-50-GAP with layer3 at stride 1 give 28x28 maps at 224 instead
of 14x14 (7 and 14 at the 112 px tested here), with the same state dict (so torchvision's weights load the same way)."""

from __future__ import annotations

import pytest
import torch

from wsol.models import build_model


@pytest.mark.parametrize("name", ["vgg16_gap", "resnet50_gap"])
def test_large_feature_map_doubles_the_cam_and_keeps_the_state_dict(name):
    small = build_model(name, num_classes=3).eval()
    large = build_model(name, num_classes=3, large_feature_map=True).eval()
    assert set(small.state_dict()) == set(large.state_dict())
    assert all(small.state_dict()[k].shape == v.shape for k, v in large.state_dict().items())
    x = torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert small.forward_features(x).shape[2:] == (7, 7)
        assert large.forward_features(x).shape[2:] == (14, 14)
