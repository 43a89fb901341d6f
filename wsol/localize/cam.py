"""``localizer=cam``: the class activation map ``M_c = sum_k w_k^c f_k`` of a network
whose head is a global pool and one linear layer (Zhou et al., CVPR 2016), from the same
forward pass that gives the logits."""

from __future__ import annotations

import torch
from torch import nn

from wsol.errors import WSOLError
from wsol.localize.base import Localizer


class CAM(Localizer):
    name = "cam"

    def __call__(
        self,
        net: nn.Module,
        images: torch.Tensor,
        features: torch.Tensor | None,
        classes: torch.Tensor,
    ):
        if not getattr(net, "has_cam", False):
            raise WSOLError(
                f"model {getattr(net, 'name', type(net).__name__)} has no class activation map "
                "(its head is not a global pool and one linear layer); use localizer=gradcam or localizer=backprop"
            )
        if features is None:
            features = net.forward_features(images)
        return net.cam(features, classes).float()
