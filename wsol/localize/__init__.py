"""Map makers: cam, gradcam, backprop, torchcam (torchcam's post-hoc CAM methods), and the
trivial baselines center and full. All share the interface of
`wsol.localize.base.Localizer`."""

from wsol.localize.backprop import Backprop
from wsol.localize.base import Localizer
from wsol.localize.baselines import CenterGaussian, FullImage
from wsol.localize.cam import CAM
from wsol.localize.gradcam import GradCAM
from wsol.localize.torchcam import TorchCAM

__all__ = ["CAM", "Backprop", "CenterGaussian", "FullImage", "GradCAM", "Localizer", "TorchCAM"]
