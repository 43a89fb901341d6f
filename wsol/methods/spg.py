"""``method=spg``: Self-produced Guidance (Zhang et al., ECCV 2018), as wsolevaluation
trains it (``wsol/method/spg.py``; its blocks in ``vgg.py``, ``resnet.py``,
``inception.py``).

The network keeps its classifier (the class map and GAP: the reference's ``SPG_A4`` is a
1x1 conv, the suite's head its linear equivalent) and gains side branches
(`SPGBranches`, registered as ``net.spg``):

- ``B1`` and ``B2``: a 3x3 conv + ReLU on the outputs of two trunk places (``spg_taps``
  of the network), then one shared 3x3 conv + ReLU + 1x1 conv to one logit map each;
- ``C``: a 3x3 conv to 512 + ReLU + 1x1 conv to one logit map, on the last conv maps.

In training the loss is ``CE(logits)`` plus three BCE attention losses, each against a
mask of 1 (foreground), 0 (background) and an ignore value (255, left out of the BCE)
built from a detached map at ``mask_size`` (bilinear upsampling, as the reference's
fixed 224):

1. B2's logits against the label's class map, min-max normalised, with thresholds
   ``(threshold_1h, threshold_1l)`` = (0.7, 0.01);
2. B1's logits against ``sigmoid(B2)``, ``(threshold_2h, threshold_2l)`` = (0.5, 0.05);
3. C's logits against ``(sigmoid(B1) + sigmoid(B2)) / 2``, ``(threshold_3h, threshold_3l)``
   = (0.7, 0.1).

A mask's foreground is ``map > high``; when that is fewer than ``fallback_pixels`` (30)
pixels of an image, ``map > fallback_fraction * max`` (0.7) instead; then ``map < low``
is background (overriding the foreground); the rest is ignored. A mask with no pixel
left contributes 0 (the reference's mean over nothing is NaN). The test map is the class
map: ``localizer=cam`` unchanged (the side branches act in training only).

Places (the reference's): ``vgg16_gap`` B1 after pool4 (a 3x3 stride-2 pad-1 max pool
as the reference, the identity with ``large_feature_map``), B2 after conv5_3, and the
added conv replaced by the reference's two 3x3 convs of 512 (``features.spg_a3``);
``resnet50_gap`` B1 after block 0 of layer3, B2 after layer3 (1024 channels);
``inceptionv3_gap`` B1 after pool3 (288), B2 after Mixed_6d (768; the reference feeds B2
the input of Mixed_6e, not its output); ``tiny_gap`` (the test network) after its second
and third blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsol.methods.base import Method, normalize_maps
from wsol.models.base import PooledLinearHead, xavier_init
from wsol.protocols.settings import integer, probability

__all__ = ["SPG", "SPGBranches", "attention_loss", "spg_mask"]

#: the mask value left out of the attention losses
IGNORE = 255.0


def _conv_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU(inplace=True)]


class SPGBranches(nn.Module):
    """B1, B2 (with their shared tail) and C; in training, forward hooks on the taps and
    on the network's features fill ``side1``, ``side2``, ``logits_c`` and ``features``
    for the loss. In eval mode the hooks do nothing."""

    def __init__(self, b1_channels: int, b2_channels: int, width: int, feature_channels: int):
        super().__init__()
        self.b1 = nn.Sequential(*_conv_relu(b1_channels, width))
        self.b2 = nn.Sequential(*_conv_relu(b2_channels, width))
        self.shared = nn.Sequential(*_conv_relu(width, width), nn.Conv2d(width, 1, 1))
        self.c = nn.Sequential(*_conv_relu(feature_channels, 512), nn.Conv2d(512, 1, 1))
        xavier_init(self)
        self.clear()

    def clear(self) -> None:
        self.side1 = self.side2 = self.logits_c = self.features = None

    def tap1(self, _module, _inputs, out) -> None:
        if self.training:
            self.side1 = self.shared(self.b1(out))

    def tap2(self, _module, _inputs, out) -> None:
        if self.training:
            self.side2 = self.shared(self.b2(out))

    def tap_features(self, _module, _inputs, out) -> None:
        if self.training:
            self.features = out
            self.logits_c = self.c(out)


def spg_mask(
    attention: torch.Tensor,
    high: float,
    low: float,
    fallback_pixels: int = 30,
    fallback_fraction: float = 0.7,
) -> torch.Tensor:
    """(B, 1, H, W) map -> mask of 1 (``> high``, or ``> fallback_fraction * max`` when
    fewer than ``fallback_pixels`` pass), 0 (``< low``), else `IGNORE`."""
    fg = attention > high
    few = fg.flatten(1).sum(dim=1) < fallback_pixels
    if bool(few.any()):
        peak = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        fg = torch.where(few.view(-1, 1, 1, 1), attention > fallback_fraction * peak, fg)
    mask = torch.full_like(attention, IGNORE)
    mask[fg] = 1.0
    mask[attention < low] = 0.0
    return mask


def attention_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits over the pixels the mask does not ignore (0 when none)."""
    keep = mask != IGNORE
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep], mask[keep])


class SPG(Method):
    name = "spg"
    networks = ("inceptionv3_gap", "resnet50_gap", "tiny_gap", "vgg16_gap")

    def __init__(
        self,
        threshold_1h: float = 0.7,
        threshold_1l: float = 0.01,
        threshold_2h: float = 0.5,
        threshold_2l: float = 0.05,
        threshold_3h: float = 0.7,
        threshold_3l: float = 0.1,
        mask_size: int | None = None,
        fallback_pixels: int = 30,
        fallback_fraction: float = 0.7,
    ):
        names = ("1h", "1l", "2h", "2l", "3h", "3l")
        values = (
            threshold_1h,
            threshold_1l,
            threshold_2h,
            threshold_2l,
            threshold_3h,
            threshold_3l,
        )
        t = {n: probability(f"method.threshold_{n}", v) for n, v in zip(names, values)}
        self.thresholds = ((t["1h"], t["1l"]), (t["2h"], t["2l"]), (t["3h"], t["3l"]))
        self.mask_size = None if mask_size is None else integer("method.mask_size", mask_size, 1)
        self.fallback_pixels = integer("method.fallback_pixels", fallback_pixels, 0)
        self.fallback_fraction = probability("method.fallback_fraction", fallback_fraction)
        self.branches: SPGBranches | None = None
        self.head = None
        self._size: tuple[int, int] | None = None

    def prepare(self, net: nn.Module) -> nn.Module:
        self.check(net)
        channels = net.adapt_trunk(self.name)
        if channels != net.head.in_channels:  # a new trunk end (VGG): the same head on it
            old = net.head
            net.head = PooledLinearHead(channels, old.num_classes)
            net.head.pool, net.head.dropout = old.pool, old.dropout
        (p1, c1), (p2, c2), width = net.spg_taps
        self.branches = SPGBranches(c1, c2, width, channels)
        net.spg = self.branches  # a submodule: in the state dict, in net.train()/eval()
        net.get_submodule(p1).register_forward_hook(self.branches.tap1)
        net.get_submodule(p2).register_forward_hook(self.branches.tap2)
        net.features.register_forward_hook(self.branches.tap_features)
        net.new_layer_prefixes = (*net.new_layer_prefixes, "spg.")
        self.head = net.head
        return net

    def inputs(self, images, labels):
        self._size = tuple(images.shape[-2:])
        return images, labels

    def _mask(self, attention, high, low):
        return spg_mask(attention, high, low, self.fallback_pixels, self.fallback_fraction)

    def loss(self, logits, target, label_smoothing: float = 0.0):
        br = self.branches
        if br is None or br.features is None or br.side1 is None or br.side2 is None:
            raise RuntimeError("method=spg: the loss needs a training forward of its branches")
        size = (self.mask_size, self.mask_size) if self.mask_size else self._size

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)

        (h1, l1), (h2, l2), (h3, l3) = self.thresholds
        class_map = self.head.cam(br.features, target[:, None]).detach()
        attention = normalize_maps(up(class_map))
        side1, side2, side_c = up(br.side1), up(br.side2), up(br.logits_c)
        b2 = torch.sigmoid(side2.detach())
        fused = (torch.sigmoid(side1.detach()) + b2) / 2
        br.clear()
        return (
            F.cross_entropy(logits, target, label_smoothing=label_smoothing)
            + attention_loss(side2, self._mask(attention, h1, l1))
            + attention_loss(side1, self._mask(b2, h2, l2))
            + attention_loss(side_c, self._mask(fused, h3, l3))
        )

    def config(self) -> dict:
        (h1, l1), (h2, l2), (h3, l3) = self.thresholds
        return {
            "name": self.name,
            "threshold_1h": h1,
            "threshold_1l": l1,
            "threshold_2h": h2,
            "threshold_2l": l2,
            "threshold_3h": h3,
            "threshold_3l": l3,
            "mask_size": self.mask_size,
            "fallback_pixels": self.fallback_pixels,
            "fallback_fraction": self.fallback_fraction,
        }
