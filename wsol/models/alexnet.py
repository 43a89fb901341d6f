"""AlexNet (Krizhevsky et al., 2012) from torchvision, as the CAM paper uses it.

- ``alexnet_gap``: AlexNet's conv layers up to conv5 and its ReLU (``features.0`` ..
  ``features.11``; pool5 and the fully connected layers removed), then a 3x3 conv of
  1024 units, stride 1, pad 1 (``features.cam_conv``), ReLU, the global pool and one
  linear layer. 13x13 CAM at 227x227 (and at 224x224).
- ``alexnet_star_gap``: the paper's AlexNet*-GAP, with fewer layers removed: conv1 ..
  conv4 from torchvision (``features.0`` .. ``features.9``), a new conv5 of 384 units
  (3x3, pad 1, ``features.conv5``) and its ReLU, a 3x3 max pool of stride 1 and
  padding 0 (``features.pool5``: 13 -> 11), two 3x3 convs of 512 units, pad 1
  (``features.cam_conv1``, ``features.cam_conv2``) each with a ReLU, the global pool and
  one linear layer. 11x11 CAM at 227x227 (and at 224x224), as in the authors' released
  ``deploy_alexnetplusCAM_imagenet.prototxt`` (whose convs 5-7 are grouped, group 2, as
  Caffe's AlexNet is; ours are not).
- ``alexnet``: the unmodified network with its fully connected head, for the paper's
  classification rows: ``forward_features`` gives conv5's maps after their ReLU (13x13
  at 227); the head is pool5, torchvision's 6x6 adaptive average pool, flatten and the
  classifier (``head.classifier.{1,4,6}``; the last Linear is new when
  ``num_classes != 1000``). No CAM; ``pool`` is accepted and ignored.

The GAP networks take ``dropout`` (default 0) on the pooled vector; the released
AlexNet*-CAM prototxt has 0.5 there.

Resolution. torchvision's AlexNet is the "one weird trick" variant: conv1 has 64
filters with padding 2 (Caffe's has 96 with padding 0), and the conv widths are
64/192/384/256/256 (Caffe: 96/256/384/384/256). With padding 2, conv1 maps 227 to 56
and 224 to 55, and after the two 3x3/2 max pools both give 13x13 at conv5; Caffe's
padding 0 also gives 13x13 at 227 (227 -> 55 -> 27 -> 13) but 12x12 at 224. We keep
torchvision's padding 2, the one its ImageNet weights were trained with, so the map is
13x13 at the paper's 227 and at 224. The new conv5 of AlexNet*-GAP takes conv4's 256
channels (Caffe: 384) to 384.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import alexnet as tv_alexnet

from wsol.models.base import PooledLinearHead, WSOLNet
from wsol.models.registry import register
from wsol.models.vgg import FCHead, new_conv
from wsol.models.weights import Source, sequential_map

#: indices in torchvision's ``alexnet().features``: conv4's ReLU, conv5's ReLU (12 is pool5)
_CONV4_RELU = 9
_CONV5_RELU = 11


def _trunk(last: int) -> tuple[nn.Sequential, nn.Module]:
    tv = tv_alexnet(weights=None)
    trunk = nn.Sequential()
    for i in range(last + 1):
        trunk.add_module(str(i), tv.features[i])
    return trunk, tv


class AlexNetGAP(WSOLNet):
    default_input_size = 227
    new_layer_prefixes = ("features.cam_conv.", "head.")

    def __init__(
        self, num_classes: int, pool: str = "avg", cam_channels: int = 1024, dropout: float = 0.0
    ):
        super().__init__()
        self.features, _ = _trunk(_CONV5_RELU)
        self.features.add_module("cam_conv", new_conv(256, cam_channels))
        self.features.add_module("cam_relu", nn.ReLU(inplace=True))
        self.head = PooledLinearHead(cam_channels, num_classes, pool=pool, dropout=dropout)


class AlexNetStarGAP(WSOLNet):
    default_input_size = 227
    new_layer_prefixes = ("features.conv5.", "features.cam_conv1.", "features.cam_conv2.", "head.")

    def __init__(
        self,
        num_classes: int,
        pool: str = "avg",
        conv5_channels: int = 384,
        cam_channels: int = 512,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.features, _ = _trunk(_CONV4_RELU)
        f = self.features
        f.add_module("conv5", new_conv(256, conv5_channels))
        f.add_module("relu5", nn.ReLU(inplace=True))
        f.add_module("pool5", nn.MaxPool2d(kernel_size=3, stride=1, padding=0))
        f.add_module("cam_conv1", new_conv(conv5_channels, cam_channels))
        f.add_module("cam_relu1", nn.ReLU(inplace=True))
        f.add_module("cam_conv2", new_conv(cam_channels, cam_channels))
        f.add_module("cam_relu2", nn.ReLU(inplace=True))
        self.head = PooledLinearHead(cam_channels, num_classes, pool=pool, dropout=dropout)


class AlexNet(WSOLNet):
    """The unmodified AlexNet; ``head.classifier.6`` is new only when num_classes != 1000."""

    default_input_size = 227
    new_layer_prefixes = ("head.classifier.6.",)

    def __init__(self, num_classes: int, pool: str = "avg", dropout: float = 0.5):
        super().__init__()
        self.features, tv = _trunk(_CONV5_RELU)
        for m in tv.classifier:
            if isinstance(m, nn.Dropout):
                m.p = float(dropout)
        self.head = FCHead(tv.features[_CONV5_RELU + 1], tv.avgpool, tv.classifier, num_classes)


#: torchvision arch, weights entry, builder kwargs of the weights (`Source`)
_ALEXNET = ("alexnet", "AlexNet_Weights.IMAGENET1K_V1", ())


@register(
    "alexnet_gap", label="AlexNet", weights=Source(*_ALEXNET, sequential_map(_CONV5_RELU, None))
)
def alexnet_gap(num_classes: int, pool: str = "avg", **kw) -> AlexNetGAP:
    return AlexNetGAP(num_classes, pool=pool, **kw)


# conv5 (features.10) is replaced by a 384-unit conv: removed
@register(
    "alexnet_star_gap",
    label="AlexNet*",
    weights=Source(*_ALEXNET, sequential_map(_CONV4_RELU, None)),
)
def alexnet_star_gap(num_classes: int, pool: str = "avg", **kw) -> AlexNetStarGAP:
    return AlexNetStarGAP(num_classes, pool=pool, **kw)


@register(
    "alexnet",
    label="AlexNet (unmodified)",
    weights=Source(*_ALEXNET, sequential_map(_CONV5_RELU, "head.classifier.")),
)
def alexnet(num_classes: int, pool: str = "avg", **kw) -> AlexNet:
    """``pool`` is accepted and ignored: the head is AlexNet's own fully connected one."""
    return AlexNet(num_classes, pool=pool, **kw)
