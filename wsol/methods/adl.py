"""``method=adl``: Attention-based Dropout Layer (Choe & Shim, CVPR 2019), as
wsolevaluation trains it (``wsol/method/adl.py``; its places in ``vgg.py``,
``resnet.py``, ``inception.py``).

In training, at each of the network's ADL places, the features ``f`` (B, K, h, w) are
multiplied by one of two maps of their channel-mean attention ``a = mean_k f_k``:
the *drop mask* ``a < threshold * max_ij a`` (per image) or the *importance map*
``sigmoid(a)``. Which one is drawn **once per forward call for the whole batch**, as the
reference draws one scalar: the drop mask with probability ``drop_rate``
(``floor(u + drop_rate)`` with ``u`` uniform). In eval mode the layer is the identity,
so the network tested (and its checkpoint) is the plain network.

Places (the reference's): ``vgg16_gap`` after pool3, after conv4_3 and after conv5_3
(``features.16``, ``features.22``, ``features.29``); ``resnet50_gap`` after block 0 of
layer3 and blocks 0 and 2 of layer4; ``inceptionv3_gap`` after Mixed_5d, after Mixed_6e
and after the second added conv (``features.cam_relu2``, the reference's A3_2b);
``tiny_gap`` (the test network, not the reference's) after blocks 2, 3 and 4. Each
network declares them (``adl_places``); ADL is not defined on the others. The layers are
installed as forward hooks of those modules and registered under ``net.adl`` (they hold
no parameters, so state dicts are unchanged). Defaults as wsolevaluation's
``config.py``: ``drop_rate`` 0.75, ``threshold`` 0.9.
"""

from __future__ import annotations

import torch
from torch import nn

from wsol.methods.base import Method
from wsol.protocols.settings import probability

__all__ = ["ADL", "AttentionDropout"]


class AttentionDropout(nn.Module):
    """One ADL layer: identity in eval; in training ``f *`` (drop mask or importance map)."""

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9):
        super().__init__()
        self.drop_rate = float(drop_rate)
        self.threshold = float(threshold)

    def masks(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(drop mask, importance map), each (B, 1, h, w)."""
        attention = f.mean(dim=1, keepdim=True)
        peak = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        drop = (attention < self.threshold * peak).to(f.dtype)
        return drop, torch.sigmoid(attention)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return f
        drop, importance = self.masks(f)
        use_drop = torch.floor(torch.rand(()) + self.drop_rate).to(f.device, f.dtype)
        return f * (use_drop * drop + (1.0 - use_drop) * importance)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate:g}, threshold={self.threshold:g}"


class ADL(Method):
    name = "adl"
    #: the networks that declare ADL places (``adl_places``; tests check the two agree)
    networks = ("inceptionv3_gap", "resnet50_gap", "tiny_gap", "vgg16_gap")

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9):
        self.drop_rate = probability("method.drop_rate", drop_rate)
        self.threshold = probability("method.threshold", threshold)

    def prepare(self, net: nn.Module) -> nn.Module:
        self.check(net)
        layers = nn.ModuleList()
        for place in net.adl_places:
            layer = AttentionDropout(self.drop_rate, self.threshold)
            net.get_submodule(place).register_forward_hook(
                lambda _m, _i, out, layer=layer: layer(out)
            )
            layers.append(layer)
        net.adl = layers  # follows net.train() / net.eval(); no parameters, no state
        return net

    def config(self) -> dict:
        return {"name": self.name, "drop_rate": self.drop_rate, "threshold": self.threshold}
