"""GoogLeNet (Szegedy et al., 2015) from torchvision, as the CAM paper uses it.

- ``googlenet_gap``: GoogLeNet up to inception4e (auxiliary heads, maxpool4,
  inception5a/5b and the classifier removed), then a 3x3 conv of 1024 units, stride 1,
  pad 1, ReLU, the global pool and one linear layer. 14x14 CAM at 224x224.
- ``googlenet``: the unmodified network (inception5b, its own global average pool,
  dropout 0.2 and classifier) for the paper's "GoogLeNet" row: 7x7 CAM from its own
  classifier.

torchvision's ImageNet GoogLeNet expects ``transform_input=True`` (it re-normalises an
ImageNet-normalised input to [-1, 1] per channel); the flag is set from
``model.pretrained`` in the configs and kept in checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import googlenet as tv_googlenet

from wsol.models.base import PooledLinearHead, WSOLNet
from wsol.models.registry import register
from wsol.models.weights import Source, module_map

_TRUNK_4E = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
    "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
)  # fmt: skip
_TRUNK_5B = (*_TRUNK_4E, "maxpool4", "inception5a", "inception5b")


class _TransformInput(nn.Module):
    """torchvision's GoogLeNet ``transform_input``: ImageNet mean/std -> (x - 0.5) / 0.5."""

    def __init__(self, enabled: bool):
        super().__init__()
        self.enabled = bool(enabled)
        self.register_buffer(
            "scale", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) / 0.5, persistent=False
        )
        self.register_buffer(
            "shift",
            (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) - 0.5) / 0.5,
            persistent=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift if self.enabled else x

    def extra_repr(self) -> str:
        return f"enabled={self.enabled}"


def _trunk(names: tuple[str, ...], transform_input: bool) -> nn.Sequential:
    tv = tv_googlenet(weights=None, aux_logits=False, init_weights=True)
    trunk = nn.Sequential()
    trunk.add_module("transform_input", _TransformInput(transform_input))
    for n in names:
        trunk.add_module(n, getattr(tv, n))
    return trunk


class GoogLeNetGAP(WSOLNet):
    new_layer_prefixes = ("features.cam_conv.", "head.")

    def __init__(
        self,
        num_classes: int,
        pool: str = "avg",
        transform_input: bool = False,
        cam_channels: int = 1024,
    ):
        super().__init__()
        self.features = _trunk(_TRUNK_4E, transform_input)
        self.features.add_module(
            "cam_conv", nn.Conv2d(832, cam_channels, kernel_size=3, stride=1, padding=1)
        )
        self.features.add_module("cam_relu", nn.ReLU(inplace=True))
        nn.init.kaiming_normal_(self.features.cam_conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.features.cam_conv.bias)
        self.head = PooledLinearHead(cam_channels, num_classes, pool=pool)


class GoogLeNet(WSOLNet):
    """The unmodified GoogLeNet; its classifier is new only when num_classes != 1000."""

    new_layer_prefixes = ("head.fc.",)

    def __init__(
        self,
        num_classes: int,
        pool: str = "avg",
        transform_input: bool = False,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.features = _trunk(_TRUNK_5B, transform_input)
        self.head = PooledLinearHead(1024, num_classes, pool=pool, dropout=dropout)


#: torchvision builds GoogLeNet with its auxiliary classifiers for the ImageNet weights
_GOOGLENET = (
    "googlenet",
    "GoogLeNet_Weights.IMAGENET1K_V1",
    (("aux_logits", True), ("init_weights", False)),
)


@register(
    "googlenet_gap", label="GoogLeNet", weights=Source(*_GOOGLENET, module_map(_TRUNK_4E, None))
)
def googlenet_gap(num_classes: int, pool: str = "avg", **kw) -> GoogLeNetGAP:
    return GoogLeNetGAP(num_classes, pool=pool, **kw)


@register(
    "googlenet",
    label="GoogLeNet (unmodified)",
    weights=Source(*_GOOGLENET, module_map(_TRUNK_5B, "head.fc.")),
)
def googlenet(num_classes: int, pool: str = "avg", **kw) -> GoogLeNet:
    return GoogLeNet(num_classes, pool=pool, **kw)
