"""WSOL training methods (``method=NAME``): CAM (the base, `Method`) and the methods that
change the network, the images or the loss (HaS, CutMix, ADL, ...). See
docs/METHODS.md."""

from wsol.methods.base import Method

__all__ = ["Method"]
