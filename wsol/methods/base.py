"""What a WSOL training method is (``method=NAME``, `conf/method/`): how it changes the
network, the training images and the loss, on top of a suite network.

`Method` is the base; ``method=cam`` is it unchanged (the CAM paper: cross-entropy on the
network's logits). A method subclass overrides what it changes:

- `check(net)`: a one-line `WSOLError` when the method is not defined on ``net`` (it lists
  the networks it is defined on);
- `prepare(net)`: install the method's layers (forward hooks or replaced heads), before
  training and when a checkpoint is rebuilt; returns the network;
- `inputs(images, labels)`: the training batch the network sees and the target the loss
  gets (HaS hides patches, CutMix pastes a box of another image); ``labels`` is the
  batch's entry named by `Method.target` (``label``; FSL's per-pixel ``foreground``);
- `loss(logits, target, label_smoothing)`: the training loss (default cross-entropy).

Every random draw of a method comes from torch's global generator, which
`wsol.models.module.StepSeed` seeds before every training step from (seed, rank, step):
a run resumed after a kill draws the same numbers, and each DDP process its own. Methods
act in training only; at test the network is the plain network (the evaluation's
localizer makes the maps).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wsol.errors import WSOLError

__all__ = ["Method", "normalize_maps"]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each (h, w) map of (B, J, h, w) min-max normalised to [0, 1] (wsolevaluation's
    ``normalize_tensor``); a constant map becomes 0 (the reference's 0/0 is NaN)."""
    flat = maps.flatten(2)
    low = flat.amin(dim=2, keepdim=True)
    span = flat.amax(dim=2, keepdim=True) - low
    out = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1), 0)
    return out.view_as(maps)


class Method:
    name = "cam"
    #: the networks (``model.name``) the method is defined on; None: every network
    networks: tuple[str, ...] | None = None
    #: the batch entry `inputs` gets as its target: the image labels, or a per-pixel
    #: ``foreground`` the data module delivers with ``data.train_targets`` (method=fsl)
    target: str = "label"

    def check(self, net: nn.Module) -> None:
        name = getattr(net, "name", type(net).__name__)
        if self.networks is not None and name not in self.networks:
            raise WSOLError(
                f"method={self.name} is not defined on model={name}; "
                f"it is defined on: {', '.join(self.networks)}"
            )

    def prepare(self, net: nn.Module) -> nn.Module:
        self.check(net)
        return net

    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return images, labels

    def loss(self, logits: torch.Tensor, target: Any, label_smoothing: float = 0.0) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)

    def config(self) -> dict[str, Any]:
        """The method's settings (saved in checkpoints; plain types only)."""
        return {"name": self.name}
