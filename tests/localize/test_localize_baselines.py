"""center and full: shapes, one map for all, no network, full's box is the whole image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsol.errors import WSOLError
from wsol.localize import CenterGaussian, FullImage

THRESHOLDS = [1e-6, 0.01, 0.2, 0.5, 0.9, 0.99, 0.999999]


def box_above(m: np.ndarray, t: float, strict: bool = False) -> tuple[int, int, int, int]:
    """Bounding box [x0, y0, x1, y1) of the pixels ``>= t * max`` (or ``>``)."""
    keep = m > t * m.max() if strict else m >= t * m.max()
    ys, xs = np.nonzero(keep)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("cls", [CenterGaussian, FullImage])
def test_baselines_shapes_without_network(cls):
    loc = cls(size=32)
    assert not loc.needs_network and not loc.needs_grad
    classes = torch.tensor([[0, 1, 2], [5, 5, 1]])
    maps = loc(None, None, None, classes)
    assert maps.shape == (2, 3, 32, 32) and maps.dtype == torch.float32
    assert (maps == maps[0, 0]).all()  # the same map for every image and class
    with_images = loc(None, torch.zeros(2, 3, 7, 9), None, classes)
    torch.testing.assert_close(with_images, maps)


def test_center_gaussian_is_centred_and_isotropic():
    loc = CenterGaussian(size=224, sigma=0.5)
    g = loc(None, None, None, torch.zeros(1, 1, dtype=torch.long))[0, 0]
    assert g.max() <= 1 and g.min() > 0
    assert torch.equal(g, g.flip(0)) and torch.equal(g, g.flip(1)) and torch.equal(g, g.t())
    assert g[111:113, 111:113].min() == g.max()  # the four centre pixels
    # u = (2i + 1) / size - 1, sigma in half-sides: exp(-(u^2 + v^2) / (2 sigma^2))
    u = (2 * 0 + 1) / 224 - 1
    assert g[0, 111].item() == pytest.approx(
        np.exp(-(u**2 + (1 / 224) ** 2) / (2 * 0.25)), rel=1e-6
    )
    with pytest.raises(WSOLError):
        CenterGaussian(sigma=0)


def test_center_default_sigma_covers_the_image_at_20_percent():
    """Documented consequence: sigma = 1 keeps every pixel at cam2016's 20% threshold."""
    g = CenterGaussian()(None, None, None, torch.zeros(1, 1, dtype=torch.long))[0, 0].numpy()
    assert box_above(g, 0.2) == (0, 0, 224, 224)
    small = CenterGaussian(sigma=0.4)(None, None, None, torch.zeros(1, 1, dtype=torch.long))[
        0, 0
    ].numpy()
    x0, y0, x1, y1 = box_above(small, 0.2)
    assert (
        0 < x0 == y0 and x1 == y1 == 224 - x0 and (x1 - x0) / 224 == pytest.approx(0.72, abs=0.01)
    )


@pytest.mark.parametrize("t", THRESHOLDS)
def test_full_box_is_the_whole_image(t):
    m = FullImage(size=64)(None, None, None, torch.zeros(1, 1, dtype=torch.long))[0, 0]
    a = m.numpy().astype(np.float64)
    for strict in (False, True):
        assert box_above(a, t, strict) == (0, 0, 64, 64)
    # min-max normalisation leaves it unchanged (not all zeros as a constant map would be)
    norm = (a - a.min()) / (a.max() - a.min())
    np.testing.assert_array_equal(norm, a)
    assert box_above(norm, t, strict=True) == (0, 0, 64, 64)
    # upsampled bilinearly to a non-square image, as the protocols do
    for h, w in [(37, 53), (300, 500), (375, 224)]:
        up = F.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        assert box_above(up.numpy().astype(np.float64), t, strict=True) == (0, 0, w, h)


def test_full_under_the_protocols_box_rules():
    from wsol.protocols.box_sweep import levels_for_thresholds, scoremap_to_uint8, threshold_list
    from wsol.protocols.cam2016 import cam2016_box
    from wsol.protocols.components import contour_boxes
    from wsol.protocols.wsolevaluation import make_scoremap

    m = FullImage()(None, None, None, torch.zeros(1, 1, dtype=torch.long))[0, 0]
    for h, w in [(224, 224), (333, 500)]:
        up = F.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False)[
            0, 0
        ].numpy()
        for t in (0.2, 0.5, 0.95):
            np.testing.assert_array_equal(cam2016_box(up, threshold=t), [0, 0, w, h])
        u8 = scoremap_to_uint8(make_scoremap(up))
        thresholds = threshold_list(0.01)
        for level in np.unique(levels_for_thresholds(thresholds, int(u8.max()))):
            rects = contour_boxes(u8 > level)
            assert len(rects) == 1
            np.testing.assert_array_equal(rects[0], [0, 0, 224, 224])


def test_baseline_size_validation():
    with pytest.raises(WSOLError):
        FullImage(size=1)
