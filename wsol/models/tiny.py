"""``tiny_gap``: a four-layer CAM network for tests and quick CPU experiments (not a
paper model). Stride 8: an 8x8 CAM at 64x64. It declares the places of every method
(ADL after blocks 2-4, SPG's taps after blocks 2 and 3, ACoL on its last block), so
every method trains on it in seconds."""

from __future__ import annotations

from torch import nn

from wsol.models.base import PooledLinearHead, WSOLNet
from wsol.models.registry import register


def _block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class TinyGAP(WSOLNet):
    default_input_size = 64
    new_layer_prefixes = ("features.", "head.")
    #: where method=adl puts its layers: after blocks 2, 3 and 4 (their ReLUs)
    adl_places = ("features.5", "features.8", "features.11")

    @property
    def spg_taps(self):
        """method=spg's side branches (the test network's): after blocks 2 and 3."""
        return (("features.5", 2 * self.width), ("features.8", 4 * self.width), 2 * self.width)

    def __init__(self, num_classes: int, pool: str = "avg", width: int = 16):
        super().__init__()
        self.width = w = width
        self.features = nn.Sequential(
            *_block(3, w, 2),
            *_block(w, 2 * w, 2),
            *_block(2 * w, 4 * w, 2),
            *_block(4 * w, 4 * w, 1),
        )
        self.head = PooledLinearHead(4 * w, num_classes, pool=pool)


@register("tiny_gap", label="tiny", weights=None)
def tiny_gap(num_classes: int, pool: str = "avg", **kw) -> TinyGAP:
    return TinyGAP(num_classes, pool=pool, **kw)
