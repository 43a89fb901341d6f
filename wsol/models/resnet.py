"""``resnet50_gap``: torchvision's ResNet-50 (He et al., 2016) as wsolevaluation's CAM
network (Choe et al., 2020, ``wsol/resnet.py``).

layer4's first block gets stride 1 (its 3x3 ``conv2`` and its ``downsample`` 1x1 conv),
so the last maps are 14x14 at 224 instead of 7x7; then the global pool and one linear
layer. Nothing is removed and no conv is added: the head's ``head.fc`` is torchvision's
``fc`` (2048 -> classes), loaded from torchvision's weights when ``num_classes == 1000``
(as wsolevaluation does on ImageNet) and new otherwise. torchvision's names are kept
under ``features.`` (``features.layer4.0.downsample.0.weight``), so its state dicts map
one to one. (wsolevaluation also trains layer4 at its classifier learning rate; here
only the head is new and trains at ``head_lr_mult``.)
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet50 as tv_resnet50

from wsol.models.base import PooledLinearHead, WSOLNet
from wsol.models.registry import register
from wsol.models.weights import Source, module_map

_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ResNet50GAP(WSOLNet):
    #: where method=adl puts its layers (wsol/methods/adl.py; wsolevaluation's places)
    adl_places = ("features.layer3.0", "features.layer4.0", "features.layer4.2")
    #: method=spg's side branches: (place, channels) of B1 and B2, and their width
    spg_taps = (("features.layer3.0", 1024), ("features.layer3", 1024), 1024)
    new_layer_prefixes = ("head.",)

    def __init__(
        self,
        num_classes: int,
        pool: str = "avg",
        dropout: float = 0.0,
        large_feature_map: bool = False,
    ):
        super().__init__()
        tv = tv_resnet50(weights=None)
        # layer4 at stride 1 (14x14 at 224); large_feature_map: layer3 too (28x28), as
        # wsolevaluation's --large_feature_map
        for layer in (tv.layer4, tv.layer3) if large_feature_map else (tv.layer4,):
            first = layer[0]
            first.conv2.stride = (1, 1)
            first.downsample[0].stride = (1, 1)
        self.features = nn.Sequential()
        for n in _TRUNK:
            self.features.add_module(n, getattr(tv, n))
        self.head = PooledLinearHead(2048, num_classes, pool=pool, dropout=dropout)


@register(
    "resnet50_gap",
    label="ResNet-50",
    weights=Source(
        "resnet50", "ResNet50_Weights.IMAGENET1K_V1", (), module_map(_TRUNK, "head.fc.")
    ),
)
def resnet50_gap(num_classes: int, pool: str = "avg", **kw) -> ResNet50GAP:
    return ResNet50GAP(num_classes, pool=pool, **kw)
