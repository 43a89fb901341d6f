"""``localizer=cam``: the class activation map ``M_c = sum_k w_k^c f_k`` of a network
whose head is a global pool and one linear layer (Zhou et al., CVPR 2016), from the same
forward pass that gives the logits."""

from __future__ import annotations

import torch

from wsol.localize.base import Localizer


class CAM(Localizer):
    name = "cam"
    needs_cam = True

    def maps(self, net, images, features, classes) -> torch.Tensor:
        if features is None:
            features = net.forward_features(images)
        return net.cam(features, classes).float()
