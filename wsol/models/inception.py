"""``inceptionv3_gap``: torchvision's Inception-v3 (Szegedy et al., 2016) as
wsolevaluation's CAM network (Choe et al., 2020, ``wsol/inception.py``, ``cam``,
``large_feature_map=False``).

Kept: ``Conv2d_1a_3x3`` .. ``Mixed_6e`` (``AuxLogits``, ``Mixed_7a`` .. ``Mixed_7c``, the
average pool and ``fc`` are removed), with wsolevaluation's changes of stride and
padding, which make the map 14x14 at 224 (torchvision's own trunk gives 12x12):

- ``Conv2d_1a_3x3``: padding 1 (torchvision 0): 224 -> 112 -> 110 (2a) -> 110 (2b);
- ``maxpool1``, ``maxpool2``: 3x3/2 with padding 1 and ``ceil_mode`` (torchvision: no
  padding, floor): 110 -> 56 -> 56 (3b) -> 54 (4a) -> 28;
- ``maxpool3`` (added, no parameters): 3x3/2, ``ceil_mode``, after ``Mixed_5d``: 28 -> 14;
- ``Mixed_6a``: stride 1 with padding 1 in ``branch3x3`` and ``branch3x3dbl_3`` and in
  its max-pool branch (torchvision: stride 2, no padding): 14 -> 14.

Then wsolevaluation's CAM layers: dropout, a 3x3 conv 768 -> 1024, pad 1, ReLU
(``features.cam_conv1``), dropout, a 3x3 conv 1024 -> 1024, pad 1, ReLU
(``features.cam_conv2``), and the global pool with dropout and one linear layer
(``head.fc``). wsolevaluation ends in a 1x1 conv to the classes followed by the average
pool and reads its CAM from that map; with ``pool=avg`` that is the same function as our
pool-then-linear head, whose CAM ``sum_k w_k^c f_k`` is that 1x1 conv's output without
the bias. Its third dropout acts on the maps before the 1x1 conv; ours acts on the
pooled vector before the linear layer (``dropout``, default 0.5 as theirs).

torchvision's ImageNet Inception-v3 expects ``transform_input=True`` (as GoogLeNet:
ImageNet-normalised input re-normalised to [-1, 1]); the flag is set from
``model.pretrained`` in the config and kept in checkpoints. torchvision's names are kept
under ``features.`` so its state dicts map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception_v3 as tv_inception_v3
from torchvision.models.inception import InceptionB

from wsol.models.base import PooledLinearHead, WSOLNet
from wsol.models.googlenet import _TransformInput
from wsol.models.registry import register
from wsol.models.vgg import new_conv
from wsol.models.weights import Source, module_map


class _InceptionBStride1(nn.Module):
    """torchvision's ``InceptionB`` (Mixed_6a) with stride 1 and padding 1 in its two
    strided convs and its max-pool branch; same submodules and names."""

    def __init__(self, block: InceptionB):
        super().__init__()
        self.branch3x3 = block.branch3x3
        self.branch3x3dbl_1 = block.branch3x3dbl_1
        self.branch3x3dbl_2 = block.branch3x3dbl_2
        self.branch3x3dbl_3 = block.branch3x3dbl_3
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride = (1, 1)
            conv.padding = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        c = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([a, b, c], 1)


class InceptionV3GAP(WSOLNet):
    #: where method=adl puts its layers (wsol/methods/adl.py; wsolevaluation's places)
    adl_places = ("features.Mixed_5d", "features.Mixed_6e", "features.cam_relu2")
    #: method=spg's side branches: (place, channels) of B1 and B2, and their width (B2 on
    #: Mixed_6d's output: the reference feeds it Mixed_6e's input)
    spg_taps = (("features.maxpool3", 288), ("features.Mixed_6d", 768), 512)
    new_layer_prefixes = ("features.cam_conv1.", "features.cam_conv2.", "head.")

    def __init__(
        self,
        num_classes: int,
        pool: str = "avg",
        transform_input: bool = False,
        cam_channels: int = 1024,
        dropout: float = 0.5,
    ):
        super().__init__()
        tv = tv_inception_v3(weights=None, aux_logits=False, init_weights=True)
        tv.Conv2d_1a_3x3.conv.padding = (1, 1)
        f = nn.Sequential()
        f.add_module("transform_input", _TransformInput(transform_input))
        for n in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            f.add_module(n, getattr(tv, n))
        f.add_module("maxpool1", nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True))
        for n in ("Conv2d_3b_1x1", "Conv2d_4a_3x3"):
            f.add_module(n, getattr(tv, n))
        f.add_module("maxpool2", nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True))
        for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            f.add_module(n, getattr(tv, n))
        f.add_module("maxpool3", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        f.add_module("Mixed_6a", _InceptionBStride1(tv.Mixed_6a))
        for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            f.add_module(n, getattr(tv, n))
        f.add_module("cam_drop1", nn.Dropout(dropout))
        f.add_module("cam_conv1", new_conv(768, cam_channels))
        f.add_module("cam_relu1", nn.ReLU(inplace=True))
        f.add_module("cam_drop2", nn.Dropout(dropout))
        f.add_module("cam_conv2", new_conv(cam_channels, cam_channels))
        f.add_module("cam_relu2", nn.ReLU(inplace=True))
        self.features = f
        self.head = PooledLinearHead(cam_channels, num_classes, pool=pool, dropout=dropout)

    def adapt_trunk(self, method: str) -> int:
        """wsolevaluation's ACoL Inception: the classifiers sit on Mixed_6e (768 maps),
        so the two added convs (and their dropouts) go."""
        if method != "acol":
            return super().adapt_trunk(method)
        for name in ("cam_drop1", "cam_conv1", "cam_relu1", "cam_drop2", "cam_conv2", "cam_relu2"):
            delattr(self.features, name)
        return 768


#: torchvision's modules kept (under ``features.``), the rest of its state dict is removed
_KEPT = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
)  # fmt: skip


@register(
    "inceptionv3_gap",
    label="Inception-v3",
    weights=Source(
        "inception_v3",
        "Inception_V3_Weights.IMAGENET1K_V1",
        (("aux_logits", True), ("init_weights", False)),
        module_map(_KEPT, None),
    ),
)
def inceptionv3_gap(num_classes: int, pool: str = "avg", **kw) -> InceptionV3GAP:
    return InceptionV3GAP(num_classes, pool=pool, **kw)
