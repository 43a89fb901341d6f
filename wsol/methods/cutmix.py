"""``method=cutmix``: CutMix (Yun et al., ICCV 2019), as wsolevaluation trains it
(``wsol/method/cutmix.py`` and ``main.py``): with probability ``prob`` per batch, one
``lambda ~ Beta(beta, beta)`` and one box per batch; the box (side ``sqrt(1 - lambda)``
of each image side, centre uniform over the pixels, clipped to the image) is pasted
from a shuffled copy of the batch into every image, and the loss is
``lam CE(logits, y) + (1 - lam) CE(logits, y[perm])`` with ``lam`` recomputed from the
pasted area: ``1 - area / (H W)``. The network and the test are CAM's.

As in the reference, the box's half sides are ``int(side * sqrt(1 - lambda)) // 2`` and
the clipped box may be smaller than drawn (or empty, ``lam = 1``); ``beta <= 0`` turns
the method off (the reference's condition ``cutmix_beta > 0``). The draws come from
torch's generator (seeded per step, `wsol.methods.base`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from wsol.methods.base import Method
from wsol.protocols.settings import probability

__all__ = ["CutMix", "MixedTarget", "paste_box"]


class MixedTarget(NamedTuple):
    """The target of a CutMix batch: the images' own labels, the pasted images' labels,
    and the share ``lam`` of each image that is its own."""

    a: torch.Tensor
    b: torch.Tensor
    lam: float


def paste_box(
    images: torch.Tensor, lam: float, perm: torch.Tensor, cy: int, cx: int
) -> tuple[torch.Tensor, float, tuple[int, int, int, int]]:
    """Paste ``images[perm]``'s box into ``images`` (a new tensor): the box of half sides
    ``int(H sqrt(1 - lam)) // 2`` and ``int(W sqrt(1 - lam)) // 2`` around (cy, cx),
    clipped to the image. Returns (images, the kept share, (y0, y1, x0, x1))."""
    h, w = images.shape[2:]
    cut = math.sqrt(1.0 - lam)
    half_h, half_w = int(h * cut) // 2, int(w * cut) // 2
    y0, y1 = min(max(cy - half_h, 0), h), min(max(cy + half_h, 0), h)
    x0, x1 = min(max(cx - half_w, 0), w), min(max(cx + half_w, 0), w)
    out = images.clone()
    out[:, :, y0:y1, x0:x1] = images[perm, :, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    return out, kept, (y0, y1, x0, x1)


class CutMix(Method):
    name = "cutmix"

    def __init__(self, beta: float = 1.0, prob: float = 1.0):
        self.beta = float(beta)
        if not math.isfinite(self.beta):
            from wsol.errors import WSOLError

            raise WSOLError(f"method.beta={beta}: must be a finite number (<= 0 turns CutMix off)")
        self.prob = probability("method.prob", prob)

    def inputs(self, images, labels):
        if self.beta <= 0 or not float(torch.rand(())) < self.prob:
            return images, labels
        lam = float(torch.distributions.Beta(self.beta, self.beta).sample())
        perm = torch.randperm(images.shape[0]).to(images.device)
        h, w = images.shape[2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        mixed, kept, _ = paste_box(images, lam, perm, cy, cx)
        return mixed, MixedTarget(labels, labels[perm], kept)

    def loss(self, logits, target, label_smoothing=0.0):
        if not isinstance(target, MixedTarget):
            return super().loss(logits, target, label_smoothing)
        ce_a = F.cross_entropy(logits, target.a, label_smoothing=label_smoothing)
        ce_b = F.cross_entropy(logits, target.b, label_smoothing=label_smoothing)
        return target.lam * ce_a + (1.0 - target.lam) * ce_b

    def config(self) -> dict:
        return {"name": self.name, "beta": self.beta, "prob": self.prob}
