"""The trivial baselines ``localizer=center`` and ``localizer=full``: one fixed map for
every image and every class, no network (``needs_network = False``; ``net`` and
``images`` may be None, the batch size comes from ``classes``).

Both maps live on a square ``size`` x ``size`` grid; the protocols resize it to each
image (cam2016) or to 224x224 together with the boxes (wsolevaluation), so in image
coordinates the maps are *image-shaped*: stretched with the image's height and width.
"""

from __future__ import annotations

import math

import torch

from wsol.errors import WSOLError
from wsol.localize.base import Localizer

__all__ = ["CenterGaussian", "FullImage"]


def _check_size(size) -> int:
    if int(size) < 2:
        raise WSOLError(f"localizer.size must be an integer >= 2, got {size!r}")
    return int(size)


class CenterGaussian(Localizer):
    """The center-gaussian baseline of Choe et al. (CVPR 2020, "Evaluating Weakly
    Supervised Object Localization Methods Right"): an isotropic Gaussian centred on the
    image, the same map for every image and class.

    ``map(i, j) = exp(-(u_i^2 + v_j^2) / (2 sigma^2))`` with the pixel centres at
    ``u_i = (2 i + 1) / size - 1`` in (-1, 1): ``sigma`` is in units of half the image
    side (so the Gaussian is image-shaped after resizing to the image).

    Sigma. wsolevaluation's code has no center baseline; the paper describes isotropic
    Gaussian score maps centred on the image and states that the standard deviation,
    set to 1, does not affect MaxBoxAcc or PxAP. That holds for threshold-sweeping
    protocols: after min-max normalisation every threshold keeps a centred disc, and the
    sweep visits every radius whatever sigma is. Default here: ``sigma = 1.0`` (half-side
    units). It does matter for cam2016's fixed threshold (20% of the max): the kept disc
    has radius ``sigma * sqrt(2 ln 5) ~= 1.79 sigma`` half-sides, which covers the whole
    image when ``sigma >= 0.79``, i.e. with the default the cam2016 box is the whole
    image; set ``localizer.sigma`` lower (e.g. 0.4 for a box of ~72% of each side) to
    make it a centred box there.
    """

    name = "center"
    needs_network = False

    def __init__(self, size: int = 224, sigma: float = 1.0):
        self.size = _check_size(size)
        if not (float(sigma) > 0 and math.isfinite(float(sigma))):
            raise WSOLError(f"localizer.sigma must be a positive number, got {sigma!r}")
        self.sigma = float(sigma)

    def grid(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The (size, size) float32 map."""
        u = (2 * torch.arange(self.size, dtype=torch.float64, device=device) + 1) / self.size - 1
        g = torch.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / (2 * self.sigma**2))
        return g.float()

    def maps(self, net, images, features, classes) -> torch.Tensor:
        b, j = classes.shape
        return self.grid(classes.device).expand(b, j, self.size, self.size)


class FullImage(Localizer):
    """The whole image as the box, under every protocol and every threshold below 1.

    A constant map would not do: min-max normalisation (wsolevaluation) turns it into
    zeros, hence no foreground and an empty box. The map is 1 everywhere except 0 at the
    top-left pixel, so min-max normalisation leaves it as it is, and any threshold
    ``t < 1`` (relative to the max, as cam2016 does, or on the normalised map, as
    wsolevaluation does) keeps every pixel but that corner: one connected region whose
    bounding box still spans the whole grid (it holds the top-right and bottom-left
    pixels). Bilinear resizing only smears the zero over a few corner pixels, which
    leaves the same conclusion. Same map for every image and class.
    """

    name = "full"
    needs_network = False

    def __init__(self, size: int = 224):
        self.size = _check_size(size)

    def grid(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The (size, size) float32 map."""
        g = torch.ones((self.size, self.size), dtype=torch.float32, device=device)
        g[0, 0] = 0.0
        return g

    def maps(self, net, images, features, classes) -> torch.Tensor:
        b, j = classes.shape
        return self.grid(classes.device).expand(b, j, self.size, self.size)
