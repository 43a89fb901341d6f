"""``pool=lse``: log-sum-exp pooling, the continuum between GAP (r -> 0) and GMP
(r -> infinity), on every CAM network through the config."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from tests.helpers import compose_config
from wsol.errors import WSOLError
from wsol.models.base import GlobalPool


def test_lse_tends_to_the_average_and_to_the_max():
    f = torch.randn(3, 4, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mean, amax = f.mean(dim=(2, 3)), f.amax(dim=(2, 3))
    # first order in r: lse = mean + r var / 2 + O(r^2)
    for r in (1e-3, 1e-5):
        got = GlobalPool("lse", r)(f)
        var = f.var(dim=(2, 3), unbiased=False)
        torch.testing.assert_close(got, mean + r * var / 2, rtol=0, atol=10 * r**2)
    # at large r: max - log(N) / r <= lse <= max
    n = f.shape[2] * f.shape[3]
    for r in (1e3, 1e6):
        got = GlobalPool("lse", r)(f)
        assert (got <= amax + 1e-12).all() and (got >= amax - math.log(n) / r - 1e-12).all()
    # monotone in r, between the two
    rs = [0.1, 1.0, 10.0, 100.0]
    vals = torch.stack([GlobalPool("lse", r)(f) for r in rs])
    assert (vals[1:] >= vals[:-1] - 1e-12).all()
    assert (vals >= mean - 1e-12).all() and (vals <= amax + 1e-12).all()


def test_lse_is_exact_for_a_constant_map_and_does_not_overflow():
    f = torch.full((1, 2, 4, 4), 1000.0)
    torch.testing.assert_close(GlobalPool("lse", 50.0)(f), torch.full((1, 2), 1000.0))
    g = torch.zeros(1, 1, 2, 2)
    g[0, 0, 0, 0] = 800.0  # exp(r * 800) overflows float32 without the shift
    out = GlobalPool("lse", 1.0)(g)
    assert torch.isfinite(out).all()
    assert out.item() == pytest.approx(800.0 + math.log(1 / 4 + 3 / 4 * math.exp(-800.0)))


@pytest.mark.parametrize("r", [0.0, -1.0, float("inf"), float("nan")])
def test_lse_refuses_a_bad_sharpness(r):
    with pytest.raises(WSOLError, match=r"pool\.r"):
        GlobalPool("lse", r)


def test_pool_lse_reaches_the_network_and_its_cam():
    cfg = compose_config(["model=tiny_gap", "pool=lse", "pool.r=4"])
    with open_dict(cfg):
        cfg.model.num_classes = 3
    assert cfg.model.pool == "lse" and cfg.model.pool_r == 4
    net = instantiate(cfg.model).eval()
    assert net.head.pool.pool == "lse" and net.head.pool.r == 4.0 and net.has_cam
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f = net.forward_features(x)
        logits = net.forward_head(f)
        cams = net.cam(f, torch.tensor([[0, 1], [2, 0]]))
    # the logits are the LSE of the features, weighted by the linear layer
    want = net.head.fc(GlobalPool("lse", 4.0)(f))
    torch.testing.assert_close(logits, want)
    assert cams.shape == (2, 2, *f.shape[2:])
    # the GAP and GMP configs carry no sharpness
    assert compose_config(["model=tiny_gap"]).model.pool_r is None
