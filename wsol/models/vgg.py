"""VGG16 (Simonyan & Zisserman, 2015) from torchvision, as the CAM paper uses it.

- ``vgg16_gap``: VGG16's conv layers up to conv5_3 and its ReLU (``features.0`` ..
  ``features.29``; pool5 and the fully connected layers removed), then a 3x3 conv of
  1024 units, stride 1, pad 1 (``features.cam_conv``), ReLU, the global pool and one
  linear layer (``head.fc``). 14x14 CAM at 224x224. ``dropout`` (default 0) is applied
  to the pooled vector; the authors' released ``deploy_vgg16CAM.prototxt`` has 0.5 there.
- ``vgg16``: the unmodified network with its fully connected head, for the paper's
  classification rows. ``forward_features`` gives conv5_3's maps after their ReLU
  (14x14 at 224); the head is pool5, torchvision's 7x7 adaptive average pool, flatten
  and torchvision's classifier (``head.classifier.{0,3,6}``; the last Linear is new when
  ``num_classes != 1000``). It has no CAM (``has_cam`` is False): use Grad-CAM or
  Backprop. It accepts ``pool`` (every builder does) and ignores it.

torchvision's layer indices are kept (``features.28`` is conv5_3 in both), so its
state dicts map onto the kept layers one to one (see `wsol.models.weights`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import vgg16 as tv_vgg16

from wsol.models.base import PooledLinearHead, WSOLNet, xavier_init
from wsol.models.registry import register
from wsol.models.weights import Source, sequential_map

#: index of pool4 in torchvision's ``vgg16().features`` (removed by large_feature_map)
_POOL4 = 23
#: index of conv5_3's ReLU in torchvision's ``vgg16().features`` (30 is pool5)
_CONV5_3_RELU = 29


def _trunk() -> tuple[nn.Sequential, nn.Module]:
    """torchvision's VGG16 conv layers up to conv5_3's ReLU, with their indices, and the
    rest of the network (pool5, avgpool, classifier) as the torchvision module."""
    tv = tv_vgg16(weights=None)
    trunk = nn.Sequential()
    for i in range(_CONV5_3_RELU + 1):
        trunk.add_module(str(i), tv.features[i])
    return trunk, tv


def new_conv(cin: int, cout: int) -> nn.Conv2d:
    """A 3x3, stride 1, pad 1 conv for the CAM surgery, He-initialised like googlenet.py."""
    conv = nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class FCHead(nn.Module):
    """The original head of VGG / AlexNet: the last max pool (pool5), torchvision's
    adaptive average pool, flatten and the classifier; its last Linear is replaced by a
    fresh one when ``num_classes`` differs from the classifier's output size."""

    def __init__(
        self, pool5: nn.Module, avgpool: nn.Module, classifier: nn.Sequential, num_classes: int
    ):
        super().__init__()
        self.pool5 = pool5
        self.avgpool = avgpool
        self.classifier = classifier
        last = classifier[-1]
        if not isinstance(last, nn.Linear):
            raise TypeError(f"the classifier must end in a Linear layer, got {type(last).__name__}")
        if last.out_features != num_classes:
            fc = nn.Linear(last.in_features, num_classes)
            nn.init.normal_(fc.weight, 0, 0.01)
            nn.init.zeros_(fc.bias)
            classifier[len(classifier) - 1] = fc

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.pool5(f)), 1))


#: indices of pool1..pool3 in torchvision's ``vgg16().features`` (ACoL's 3x3 pools)
_POOLS_1_3 = (4, 9, 16)


def _reference_pool(stride: int) -> nn.MaxPool2d:
    """wsolevaluation's ``M1`` (stride 2) and ``M2`` (stride 1) pools: 3x3, pad 1."""
    return nn.MaxPool2d(kernel_size=3, stride=stride, padding=1)


class VGG16GAP(WSOLNet):
    #: where method=adl puts its layers (wsol/methods/adl.py; wsolevaluation's places)
    adl_places = ("features.16", "features.22", "features.29")
    #: method=spg's side branches: (place, channels) of B1 and B2, and their width
    spg_taps = (("features.23", 512), ("features.29", 512), 512)
    new_layer_prefixes = ("features.cam_conv.", "head.")

    def __init__(
        self,
        num_classes: int,
        pool: str = "avg",
        cam_channels: int = 1024,
        dropout: float = 0.0,
        large_feature_map: bool = False,
    ):
        super().__init__()
        self.large_feature_map = bool(large_feature_map)
        self.features, _ = _trunk()
        if large_feature_map:  # wsolevaluation's 28x28 VGG: no pool4 (its index kept)
            self.features[_POOL4] = nn.Identity()
        self.features.add_module("cam_conv", new_conv(512, cam_channels))
        self.features.add_module("cam_relu", nn.ReLU(inplace=True))
        self.head = PooledLinearHead(cam_channels, num_classes, pool=pool, dropout=dropout)

    def adapt_trunk(self, method: str) -> int:
        """wsolevaluation's ACoL and SPG VGGs (``configs_dict`` of its vgg.py): the added
        conv goes; ACoL gets 3x3 pools (pool4 at stride 1 for 28x28 maps) and a 3x3 max
        and average pool after conv5_3; SPG a 3x3 pool4 and two new 3x3 convs of 512."""
        if method not in ("acol", "spg"):
            return super().adapt_trunk(method)
        f = self.features
        del f.cam_conv, f.cam_relu
        if method == "acol":
            for i in _POOLS_1_3:
                f[i] = _reference_pool(2)
            f[_POOL4] = _reference_pool(1 if self.large_feature_map else 2)
            f.add_module("acol_pool", _reference_pool(1))
            f.add_module("acol_avgpool", nn.AvgPool2d(kernel_size=3, stride=1, padding=1))
        else:
            if not self.large_feature_map:
                f[_POOL4] = _reference_pool(2)
            f.add_module(
                "spg_a3",
                xavier_init(
                    nn.Sequential(
                        nn.Conv2d(512, 512, 3, padding=1),
                        nn.ReLU(inplace=True),
                        nn.Conv2d(512, 512, 3, padding=1),
                        nn.ReLU(inplace=True),
                    )
                ),
            )
            self.new_layer_prefixes = (*self.new_layer_prefixes, "features.spg_a3.")
        return 512


class VGG16(WSOLNet):
    """The unmodified VGG16; ``head.classifier.6`` is new only when num_classes != 1000."""

    new_layer_prefixes = ("head.classifier.6.",)

    def __init__(self, num_classes: int, pool: str = "avg", dropout: float = 0.5):
        super().__init__()
        self.features, tv = _trunk()
        for m in tv.classifier:
            if isinstance(m, nn.Dropout):
                m.p = float(dropout)
        self.head = FCHead(tv.features[_CONV5_3_RELU + 1], tv.avgpool, tv.classifier, num_classes)


#: torchvision arch, weights entry, builder kwargs of the weights (`Source`)
_VGG16 = ("vgg16", "VGG16_Weights.IMAGENET1K_V1", ())


@register("vgg16_gap", label="VGGnet", weights=Source(*_VGG16, sequential_map(_CONV5_3_RELU, None)))
def vgg16_gap(num_classes: int, pool: str = "avg", **kw) -> VGG16GAP:
    return VGG16GAP(num_classes, pool=pool, **kw)


@register(
    "vgg16",
    label="VGGnet (unmodified)",
    weights=Source(*_VGG16, sequential_map(_CONV5_3_RELU, "head.classifier.")),
)
def vgg16(num_classes: int, pool: str = "avg", **kw) -> VGG16:
    """``pool`` is accepted and ignored: the head is VGG16's own fully connected one."""
    return VGG16(num_classes, pool=pool, **kw)
