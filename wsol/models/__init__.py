"""Networks (plain nn.Modules with forward_features / forward_head), their registry and
weight loading, and the LightningModule that trains them. Imports neither data nor
protocols."""

from wsol.models.base import GlobalPool, PooledLinearHead, WSOLNet
from wsol.models.registry import available, build_model, network_label, register

__all__ = [
    "GlobalPool",
    "PooledLinearHead",
    "WSOLNet",
    "available",
    "build_model",
    "network_label",
    "register",
]
