"""``nin``: Network in Network for ImageNet (Lin et al., ICLR 2014), the CAM paper's NIN row.

Four mlpconv blocks, each a conv and two 1x1 convs ("cccp"), every conv followed by a
ReLU; named after the layers of the authors' Caffe model (``conv1``, ``cccp1`` ...):

1. conv1 11x11/4, 96 (no padding); cccp1, cccp2 1x1, 96; max pool 3/2;
2. conv2 5x5, pad 2, 256; cccp3, cccp4 1x1, 256; max pool 3/2;
3. conv3 3x3, pad 1, 384; cccp5, cccp6 1x1, 384; max pool 3/2; dropout 0.5;
4. conv4 3x3, pad 1, 1024; cccp7 1x1, 1024; cccp8 1x1, ``num_classes``;

then the global pool. The last map has one channel per class, so the head is
``PooledLinearHead(num_classes, num_classes, pool, linear=False)`` and the CAM of a
class is its channel (after cccp8's ReLU, as in the Caffe model).

Resolution: the max pools use ``ceil_mode=True``, Caffe's rounding, so the map is 6x6
at 224 (224 -> 54 -> 27 -> 27 -> 13 -> 13 -> 6) and at 227, as in the paper's model
(trained on 224 crops, global pool of kernel 6). Floor rounding would give 5x5 at 224.

Initialisation: every conv is Kaiming-normal with a zero bias, except cccp8, the class-map
layer, which starts like a classifier: weights normal with std ``class_map_std`` (0.01) and
bias ``class_map_bias`` (1.0; ``class_map_std=None``, ``class_map_bias=0`` give the
Kaiming init of the other convs), so every class map starts positive everywhere. With the
Kaiming init and a zero bias, training from scratch kills cccp8 in the first tens of steps
(its ReLU'd maps all zero, loss ln C from then on) under SGD and AdamW alike: a ReLU before
the softmax is a ratchet, as the push-down on the wrong classes' live cells always acts
while the push-up on the true class's dead cells never does. Starting alive and small keeps
the layer in its linear regime, where the pushes cancel, until the maps have learnt
(measured in results/README.md, "The synthetic studies: scale"). Loaded weights replace both.

torchvision has no NIN: ``model.pretrained=true`` is an error; a state dict of this
network loads with ``model.weights=PATH``. Every layer is new (``new_layer_prefixes``
covers the whole network), so ``head_lr_mult`` multiplies every layer's rate.
"""

from __future__ import annotations

from torch import nn

from wsol.models.base import PooledLinearHead, WSOLNet
from wsol.models.registry import register


def _conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=padding)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class NIN(WSOLNet):
    new_layer_prefixes = ("features.", "head.")

    def __init__(
        self,
        num_classes: int,
        pool: str = "avg",
        dropout: float = 0.5,
        class_map_std: float | None = 0.01,
        class_map_bias: float = 1.0,
    ):
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []

        def mlpconv(
            names: tuple[str, str, str],
            cin: int,
            cout: int,
            k: int,
            stride: int,
            padding: int,
            last: int,
        ):
            for name, conv in zip(
                names,
                (_conv(cin, cout, k, stride, padding), _conv(cout, cout, 1), _conv(cout, last, 1)),
            ):
                layers.append((name, conv))
                layers.append((f"{name}_relu", nn.ReLU(inplace=True)))

        mlpconv(("conv1", "cccp1", "cccp2"), 3, 96, 11, 4, 0, 96)
        layers.append(("pool1", nn.MaxPool2d(3, stride=2, ceil_mode=True)))
        mlpconv(("conv2", "cccp3", "cccp4"), 96, 256, 5, 1, 2, 256)
        layers.append(("pool2", nn.MaxPool2d(3, stride=2, ceil_mode=True)))
        mlpconv(("conv3", "cccp5", "cccp6"), 256, 384, 3, 1, 1, 384)
        layers.append(("pool3", nn.MaxPool2d(3, stride=2, ceil_mode=True)))
        layers.append(("drop", nn.Dropout(dropout)))
        mlpconv(("conv4", "cccp7", "cccp8"), 384, 1024, 3, 1, 1, num_classes)
        self.features = nn.Sequential()
        for name, module in layers:
            self.features.add_module(name, module)
        if class_map_std is not None:  # None keeps the Kaiming init of every other conv
            nn.init.normal_(self.features.cccp8.weight, std=class_map_std)
        nn.init.constant_(self.features.cccp8.bias, class_map_bias)
        self.head = PooledLinearHead(num_classes, num_classes, pool=pool, linear=False)


@register("nin", label="NIN", weights=None)  # no torchvision weights: model.weights=PATH
def nin(num_classes: int, pool: str = "avg", **kw) -> NIN:
    return NIN(num_classes, pool=pool, **kw)
