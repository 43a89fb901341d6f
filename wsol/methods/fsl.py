"""``method=fsl``: the few-shot-learning baseline of Choe et al., "Evaluating Weakly
Supervised Object Localization Methods Right" (CVPR 2020): the localization supervision
that the WSOL protocol spends on choosing hyperparameters (the ``train-fullsup`` split,
wsolevaluation's ``val/``) spent instead on training a class-agnostic foreground
predictor, whose foreground map every protocol scores as it scores a CAM.

The network keeps its trunk (``forward_features``, the backbone the CAM methods use)
and its head is replaced by `ForegroundHead`: one 1x1 conv from the last conv maps to
one foreground logit per cell. The loss is the per-pixel binary cross-entropy of those
logits, upsampled bilinearly to the training input's resolution, against the batch's
``foreground`` (the data module's ``train_targets``: the image's mask where it has one,
its boxes filled where it has none; mask pixels marked ignore, 255, are left out). The
image labels are not used: the network has no classifier (``ForegroundHead.classifies``
is False), so the evaluation reports no classification numbers and no top-k guesses.

The test map (`ForegroundHead.cam`) is the foreground probability ``sigmoid(logit)`` at
the conv maps' resolution, the same map in every class column of ``classes``: the
ground-truth column scores it GT-known style, and ``localizer=cam`` and every protocol
work on it unchanged. The probability, not the logit, because ``cam2016`` keeps the
pixels ``>= 0.2 x max`` of the raw map, which needs a non-negative map; the min-max
normalisation of the other protocols makes the two rank pixels alike.

Which split it trains on is configuration (``conf/method/fsl.yaml`` includes
``_fsl_data.yaml``: ``data.train_split=val``, ``data.train_targets=foreground``), not
code. docs/METHODS.md, "Few-shot baseline", says what follows the paper and what the
suite chose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsol.errors import WSOLError
from wsol.methods.base import Method
from wsol.models.base import GlobalPool, xavier_init

__all__ = ["FSL", "ForegroundHead", "foreground_loss"]

#: a ``foreground`` pixel no loss may use (`wsol.data.transforms.IGNORE`)
IGNORE = 255


class ForegroundHead(nn.Module):
    """One 1x1 conv to a foreground logit map, in place of the classifier.

    ``forward(f)`` returns (B, num_classes) scores, the pooled foreground logit in every
    class column, so that whatever asks a network for logits (Grad-CAM's backward pass,
    the evaluation's forward) gets the shape it expects and a score that means "object
    here"; they are not class scores (``classifies`` is False). In training it keeps the
    logit map (B, 1, h, w) in ``maps`` for the loss."""

    #: no class scores: the evaluation reports no classification metric for this head
    classifies = False

    def __init__(self, in_channels: int, num_classes: int, pool: GlobalPool):
        super().__init__()
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.conv = xavier_init(nn.Conv2d(self.in_channels, 1, kernel_size=1))
        self.pool = pool
        self.maps: torch.Tensor | None = None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        maps = self.conv(f)
        self.maps = maps if self.training else None
        return self.pool(maps).expand(-1, self.num_classes)

    def cam(self, f: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The foreground probability (B, 1, h, w) repeated for each of the J columns of
        ``classes`` (B, J): the same map whatever the class."""
        fg = torch.sigmoid(self.conv(f))
        return fg.expand(-1, classes.shape[1], -1, -1).contiguous()

    def bias(self, classes: torch.Tensor) -> torch.Tensor:
        return torch.zeros(classes.shape, dtype=torch.float32, device=classes.device)


def foreground_loss(
    maps: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean BCE-with-logits of ``maps`` (B, 1, h, w), upsampled bilinearly to the
    target's (H, W), against ``target`` (B, H, W): 1 object, 0 background, `IGNORE` left
    out (0 when every pixel is ignored). ``label_smoothing`` s moves the targets to
    ``t (1 - s) + s / 2``, the binary form of the classifiers' smoothing."""
    if target.dim() != 3 or maps.dim() != 4 or maps.shape[1] != 1:
        raise ValueError(
            f"foreground loss: maps (B, 1, h, w) and target (B, H, W), got "
            f"{tuple(maps.shape)} and {tuple(target.shape)}"
        )
    logits = F.interpolate(
        maps.float(), size=target.shape[-2:], mode="bilinear", align_corners=False
    )[:, 0]
    keep = target != IGNORE
    if not bool(keep.any()):
        return logits.sum() * 0.0
    t = target[keep].float()
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(logits[keep], t)


class FSL(Method):
    name = "fsl"
    # the per-pixel foreground the data module delivers (data.train_targets), not labels
    target = "foreground"

    def __init__(self):
        self.head: ForegroundHead | None = None

    def check(self, net: nn.Module) -> None:
        head = getattr(net, "head", None)
        if not (
            getattr(net, "has_cam", False) and isinstance(getattr(head, "pool", None), GlobalPool)
        ):
            name = getattr(net, "name", type(net).__name__)
            raise WSOLError(
                f"method=fsl is not defined on model={name}: it replaces a head of a global "
                "pool and one linear layer on conv maps (a CAM network, e.g. model=vgg16_gap)"
            )

    def prepare(self, net: nn.Module) -> nn.Module:
        self.check(net)
        self.head = ForegroundHead(net.head.in_channels, net.head.num_classes, net.head.pool)
        net.head = self.head
        return net

    def loss(self, logits, target, label_smoothing: float = 0.0):
        if self.head is None or self.head.maps is None:
            raise RuntimeError("method=fsl: the loss needs a training forward of its head")
        maps, self.head.maps = self.head.maps, None
        return foreground_loss(maps, target, label_smoothing)
