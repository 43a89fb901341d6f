"""``method=acol``: Adversarial Complementary Learning (Zhang et al., CVPR 2018), as
wsolevaluation trains it (``wsol/method/acol.py``; the backbones in ``vgg.py``,
``resnet.py``, ``inception.py``; the loss in ``main.py``).

Two classifiers, A and B, each three convs (3x3 to ``width`` channels, ReLU, 3x3,
ReLU, 1x1 to one map per class), sit on the backbone's last conv maps ``f``; a class's
logit is the global pool of its map (``pool``: GAP as the reference, or max / LSE).
B sees ``f`` erased where A's map of the label, min-max normalised per image, is
``>= threshold`` (0.7): the erasure drives B to the parts A did not use. Loss
``CE(A) + CE(B)``. The label is the training label (the reference passes it to the
network); without one (a forward outside training), A's argmax.

The test map of class ``c`` (`AcolHead.cam`) is the element-wise max of the two
branches' min-max-normalised maps of ``c``, B computed on ``f`` erased by A's map of
``c`` (the reference computes it for the ground-truth class; each column of the suite's
(B, J) classes gets its own erasure). A constant map normalises to 0 (the reference
divides by zero: NaN, which no threshold selects).

Backbones (`WSOLNet.adapt_trunk`): ``vgg16_gap`` as the reference's ACoL VGG (its
pools 1 to 4 as 3x3 stride-2 pad-1 max pools, pool4 at stride 1 with
``large_feature_map``; the added conv replaced by a 3x3 stride-1 max pool and a 3x3
average pool: the classifiers see conv5_3's 512 maps); ``resnet50_gap`` on layer4
(2048); ``inceptionv3_gap`` on Mixed_6e (768, the two added convs removed); and
``tiny_gap`` (the test network). New layers are Xavier-initialised, as the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsol.methods.base import Method, normalize_maps
from wsol.models.base import GlobalPool, xavier_init
from wsol.protocols.settings import integer, probability

__all__ = ["ACoL", "AcolHead"]


def _classifier(cin: int, width: int, num_classes: int) -> nn.Sequential:
    return xavier_init(
        nn.Sequential(
            nn.Conv2d(cin, width, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(width, width, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(width, num_classes, kernel_size=1),
        )
    )


class AcolHead(nn.Module):
    """The head ACoL puts on a network: classifiers A and B, the pool, the erasure.

    ``forward(f)`` returns A's logits; in training it also runs B on the erased features
    and keeps B's logits in ``logits_b`` for the loss. ``labels`` is set by the method
    for the next training forward (the reference's ``model(images, labels)``)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pool: GlobalPool,
        threshold: float = 0.7,
        width: int = 1024,
    ):
        super().__init__()
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.classifier_A = _classifier(in_channels, width, num_classes)
        self.classifier_B = _classifier(in_channels, width, num_classes)
        self.pool = pool
        self.threshold = float(threshold)
        self.labels: torch.Tensor | None = None
        self.logits_b: torch.Tensor | None = None

    def erase(self, f: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """``f`` (B, K, h, w) zeroed where ``attention`` (B, 1, h, w, in [0, 1]) is
        ``>= threshold``."""
        return f * (attention < self.threshold).to(f.dtype)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        maps_a = self.classifier_A(f)
        logits = self.pool(maps_a)
        labels, self.labels = self.labels, None
        if not self.training:
            self.logits_b = None
            return logits
        if labels is None:
            labels = logits.argmax(dim=1)
        rows = torch.arange(f.shape[0], device=f.device)
        attention = normalize_maps(maps_a.detach()[rows, labels][:, None])
        self.logits_b = self.pool(self.classifier_B(self.erase(f, attention)))
        return logits

    def cam(self, f: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """max(normalised A map, normalised B map) of each class of ``classes`` (B, J)."""
        h, w = f.shape[2:]
        index = classes[:, :, None, None].expand(-1, -1, h, w)
        a = normalize_maps(torch.gather(self.classifier_A(f), 1, index))
        out = []
        for j in range(classes.shape[1]):
            maps_b = self.classifier_B(self.erase(f, a[:, j : j + 1]))
            b = normalize_maps(torch.gather(maps_b, 1, index[:, j : j + 1]))
            out.append(torch.maximum(a[:, j : j + 1], b))
        return torch.cat(out, dim=1)

    def bias(self, classes: torch.Tensor) -> torch.Tensor:
        return torch.zeros(classes.shape, dtype=torch.float32, device=classes.device)


class ACoL(Method):
    name = "acol"
    networks = ("inceptionv3_gap", "resnet50_gap", "tiny_gap", "vgg16_gap")

    def __init__(self, threshold: float = 0.7, width: int = 1024):
        self.threshold = probability("method.threshold", threshold)
        self.width = integer("method.width", width, 1)
        self.head: AcolHead | None = None

    def prepare(self, net: nn.Module) -> nn.Module:
        self.check(net)
        num_classes = net.head.num_classes
        pool = net.head.pool
        channels = net.adapt_trunk(self.name)
        self.head = AcolHead(channels, num_classes, pool, self.threshold, self.width)
        net.head = self.head
        return net

    def inputs(self, images, labels):
        if self.head is not None:
            self.head.labels = labels
        return images, labels

    def loss(self, logits, target, label_smoothing: float = 0.0):
        if self.head is None or self.head.logits_b is None:
            raise RuntimeError("method=acol: the loss needs a training forward of its head")
        logits_b = self.head.logits_b.float()
        self.head.logits_b = None
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing) + F.cross_entropy(
            logits_b, target, label_smoothing=label_smoothing
        )

    def config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "width": self.width}
