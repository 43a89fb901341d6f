"""What every network of the suite is: a plain `nn.Module` split timm's way.

- ``forward_features(x)``: the last conv maps ``f`` (B, K, h, w);
- ``forward_head(f)``: the logits (B, C);
- ``forward(x) = forward_head(forward_features(x))``;
- ``cam(f, classes)``: for networks whose head is a global pool then one linear layer
  (``has_cam``), the class activation maps ``M_c = sum_k w_k^c f_k`` (no bias) for the
  classes ``classes`` (B, J) -> (B, J, h, w). For ``pool="avg"`` the spatial mean of
  ``M_c`` plus the bias ``b_c`` is exactly the logit of class ``c``.

``new_layer_prefixes`` names the layers the surgery added (not in the pretrained
network); they train at ``head_lr_mult`` times the base rate and are listed when
pretrained weights are loaded. ``gradcam_layer`` is the module whose output Grad-CAM
uses by default (the last conv maps, the output of ``forward_features``).
"""

from __future__ import annotations

import torch
from torch import nn

POOLS = ("avg", "max", "lse")
#: log-sum-exp's default sharpness (``pool=lse``, ``pool.r``)
LSE_R = 10.0


def xavier_init(module: nn.Module) -> nn.Module:
    """The reference's initialisation of the layers a method adds (``initialize_weights``
    with ``init_mode='xavier'``): Xavier-uniform conv weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class GlobalPool(nn.Module):
    """Global pooling of (B, K, h, w) maps to (B, K): average (GAP), max (GMP), or
    log-sum-exp (Pinheiro & Collobert, CVPR 2015) ``(1/r) log mean_ij exp(r f_ij)``, which
    tends to the average as ``r -> 0`` and to the max as ``r -> infinity``; computed as
    ``m + (1/r) log mean exp(r (f - m))`` with ``m`` the max, so no exponential overflows."""

    def __init__(self, pool: str = "avg", r: float = LSE_R):
        super().__init__()
        if pool not in POOLS:
            from wsol.errors import WSOLError

            raise WSOLError(
                f"unknown pool {pool!r}; valid: {', '.join(sorted(POOLS))} (set pool=NAME)"
            )
        r = float(r)
        if not (r > 0 and r < float("inf")):
            from wsol.errors import WSOLError

            raise WSOLError(f"pool.r must be a positive finite number, got {r!r}")
        self.pool = pool
        self.r = r

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.pool == "avg":
            return f.mean(dim=(2, 3))
        if self.pool == "max":
            return f.amax(dim=(2, 3))
        m = f.amax(dim=(2, 3), keepdim=True)
        lse = torch.log(torch.exp(self.r * (f - m)).mean(dim=(2, 3))) / self.r
        return m[:, :, 0, 0] + lse

    def extra_repr(self) -> str:
        return self.pool if self.pool != "lse" else f"lse, r={self.r:g}"


class PooledLinearHead(nn.Module):
    """Global pool, optional dropout, then one linear layer (or none: ``linear=False``
    for networks such as NIN whose last conv map already has one channel per class)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pool: str = "avg",
        dropout: float = 0.0,
        linear: bool = True,
    ):
        super().__init__()
        self.pool = GlobalPool(pool)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.fc = nn.Linear(in_channels, num_classes) if linear else None
        if not linear and in_channels != num_classes:
            raise ValueError(
                f"a head without a linear layer needs {num_classes} channels, got {in_channels}"
            )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        z = self.dropout(self.pool(f))
        return self.fc(z) if self.fc is not None else z

    def cam(self, f: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``M_c = sum_k w_k^c f_k`` for ``classes`` (B, J) -> (B, J, h, w)."""
        if self.fc is None:
            idx = classes[:, :, None, None].expand(-1, -1, f.shape[2], f.shape[3])
            return torch.gather(f, 1, idx)
        w = self.fc.weight[classes]  # (B, J, K)
        return torch.einsum("bjk,bkhw->bjhw", w.to(f.dtype), f)

    def bias(self, classes: torch.Tensor) -> torch.Tensor:
        if self.fc is None or self.fc.bias is None:
            return torch.zeros(classes.shape, dtype=torch.float32, device=classes.device)
        return self.fc.bias[classes]


class WSOLNet(nn.Module):
    """Base class: subclasses set ``self.features`` (a module producing the last conv maps)
    and ``self.head``; ``has_cam`` is True when the head makes class activation maps (a
    `PooledLinearHead`, or a training method's head with a ``cam`` such as ACoL's).

    Training methods that change the network (``wsol.methods``) read what a network
    declares for them: ``adl_places`` (ADL), ``spg_taps`` (SPG's side branches) and
    `adapt_trunk` (the trunk changes ACoL and SPG make in wsolevaluation's backbones)."""

    name: str = "wsolnet"
    new_layer_prefixes: tuple[str, ...] = ("head.",)
    #: input resolution the network is built for (224, or 227 for the AlexNets)
    default_input_size: int = 224

    features: nn.Module
    head: nn.Module

    @property
    def has_cam(self) -> bool:
        return callable(getattr(self.head, "cam", None))

    def adapt_trunk(self, method: str) -> int:
        """Change the trunk (``self.features``) as ``method`` builds this backbone, before
        the method installs its head; returns the channels of the new last conv maps.
        Default: no change (the head's input channels)."""
        return int(self.head.in_channels)

    @property
    def pool(self) -> str | None:
        return self.head.pool.pool if self.has_cam else None

    @property
    def gradcam_layer(self) -> nn.Module:
        """The module whose output Grad-CAM weighs by default: the one that makes the last
        conv maps (after their ReLU), i.e. the output of ``forward_features``."""
        return self.features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def cam(self, f: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        if not self.has_cam:
            raise TypeError(
                f"{self.name} has no class activation map (its head is not a global pool and one linear layer); use localizer=gradcam or localizer=backprop"
            )
        return self.head.cam(f, classes)

    def is_new_parameter(self, name: str) -> bool:
        return name.startswith(self.new_layer_prefixes)
