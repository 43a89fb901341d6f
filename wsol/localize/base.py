"""What a localizer is: ``localizer(net, images, features, classes) -> maps``.

- ``classes``: long (B, J); column 0 is the ground-truth class, columns 1..k the top-k
  predicted classes in descending score.
- ``features``: the output of ``net.forward_features(images)`` when the caller already
  has it (map makers that can reuse the forward pass do), else None.
- returns float32 (B, J, h, w): unnormalised, larger means "more object", at the
  localizer's native resolution (the conv map for CAM and Grad-CAM, the input for
  Backprop, a fixed grid for the baselines). Protocols resize and normalise as they
  define.

Localizers that need gradients set ``needs_grad = True``; they leave the network's
train/eval mode and ``requires_grad`` flags as they found them, and remove their hooks
even after an error.
"""

from __future__ import annotations

import torch
from torch import nn


class Localizer:
    name = "base"
    #: True when the maps need a backward pass (the evaluation loop must allow autograd)
    needs_grad = False
    #: True when the maps need no network at all (trivial baselines)
    needs_network = True

    def __call__(
        self,
        net: nn.Module,
        images: torch.Tensor,
        features: torch.Tensor | None,
        classes: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError
