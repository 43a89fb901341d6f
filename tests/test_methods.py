"""The training methods (``method=NAME``): each one's defining behaviour on small
hand-computed cases, and every defined method x network training end to end through the
main job on tiny settings."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from tests.helpers import TINY, compose_config
from wsol.errors import WSOLError
from wsol.methods import Method
from wsol.methods.adl import ADL, AttentionDropout
from wsol.methods.cutmix import CutMix, MixedTarget, paste_box
from wsol.methods.has import HideAndSeek, hide_patches


# ---- HaS ---------------------------------------------------------------------------------
def reference_has(image, grid_size, drop_rate, draws):
    """wsolevaluation's loop (has.py) with its uniform draws taken from ``draws``."""
    image = image.clone()
    batch_size, _, height, width = image.shape
    for b in range(batch_size):
        for x in range(0, width, grid_size):
            for y in range(0, height, grid_size):
                x_end = min(height, x + grid_size)
                y_end = min(height, y + grid_size)
                if next(draws) <= drop_rate:
                    image[b, :, x:x_end, y:y_end] = 0.0
    return image


@pytest.mark.parametrize(("h", "w"), [(12, 12), (8, 12), (12, 8), (10, 10)])
def test_has_is_the_reference_loop_with_the_same_draws(h, w):
    x = torch.rand(3, 2, h, w, generator=torch.Generator().manual_seed(0)) + 0.5
    torch.manual_seed(1)
    got = hide_patches(x, 4, 0.5)
    torch.manual_seed(1)
    draws = iter(torch.rand(3, math.ceil(w / 4), math.ceil(h / 4)).flatten().tolist())
    assert torch.equal(got, reference_has(x, 4, 0.5, draws))


def test_has_plain_grid_equals_the_reference_on_square_inputs_and_covers_non_square_ones():
    x = torch.ones(2, 3, 12, 12)
    torch.manual_seed(3)
    a = hide_patches(x, 4, 0.5, reference_indexing=True)
    torch.manual_seed(3)
    b = hide_patches(x, 4, 0.5, reference_indexing=False)
    assert torch.equal(a, b)
    # 8 x 16: the reference never reaches columns 8..15; the plain grid does
    y = torch.ones(64, 1, 8, 16)
    torch.manual_seed(0)
    ref = hide_patches(y, 4, 0.5, reference_indexing=True)
    assert (ref[:, :, :, 8:] == 1).all()
    torch.manual_seed(0)
    plain = hide_patches(y, 4, 0.5, reference_indexing=False)
    assert (plain[:, :, :, 8:] == 0).any()


def test_has_zeroes_whole_squares_at_the_drop_rate():
    x = torch.ones(200, 3, 32, 32)
    torch.manual_seed(0)
    out = hide_patches(x, 4, 0.3)
    squares = out[:, 0].reshape(200, 8, 4, 8, 4).permute(0, 1, 3, 2, 4).reshape(200, 64, 16)
    # every square wholly hidden (in every channel) or wholly kept
    assert ((squares == 0).all(-1) | (squares == 1).all(-1)).all()
    assert torch.equal(out[:, 0], out[:, 2])
    share = float((squares[..., 0] == 0).float().mean())
    n = 200 * 64
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n), share
    assert torch.equal(hide_patches(x, 0, 0.5), x)  # grid_size 0: off, as the reference


def test_has_method_hides_only_the_training_images():
    m = HideAndSeek(grid_size=2, drop_rate=1.0)
    x, y = torch.ones(2, 3, 4, 4), torch.tensor([0, 1])
    hidden, target = m.inputs(x, y)
    assert (hidden == 0).all() and target is y
    with pytest.raises(WSOLError, match=r"method\.drop_rate=1\.5: must be in \[0, 1\]"):
        HideAndSeek(drop_rate=1.5)


# ---- CutMix ------------------------------------------------------------------------------
def test_cutmix_box_and_lambda_equal_the_pasted_area():
    x = torch.arange(2 * 1 * 10 * 8, dtype=torch.float32).reshape(2, 1, 10, 8)
    perm = torch.tensor([1, 0])
    out, kept, (y0, y1, x0, x1) = paste_box(x, 0.75, perm, cy=2, cx=7)
    # side sqrt(0.25) = 0.5: half sides int(10 * 0.5) // 2 = 2, int(8 * 0.5) // 2 = 2
    assert (y0, y1, x0, x1) == (0, 4, 5, 8)  # clipped at the top and the right
    assert kept == pytest.approx(1 - (4 * 3) / 80)
    assert torch.equal(out[:, :, y0:y1, x0:x1], x[perm, :, y0:y1, x0:x1])
    outside = torch.ones_like(x, dtype=torch.bool)
    outside[:, :, y0:y1, x0:x1] = False
    assert torch.equal(out[outside], x[outside])
    changed = float((out != x).float().mean())
    assert changed == pytest.approx(1 - kept)


def test_cutmix_loss_mixes_the_two_labels_by_lambda():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    a, b = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 3, 2, 1])
    loss = CutMix().loss(logits, MixedTarget(a, b, 0.3))
    want = 0.3 * F.cross_entropy(logits, a) + 0.7 * F.cross_entropy(logits, b)
    torch.testing.assert_close(loss, want)


def test_cutmix_draws_are_seeded_and_prob_zero_is_off():
    x, y = torch.rand(6, 3, 16, 16), torch.arange(6)
    torch.manual_seed(5)
    one = CutMix(beta=1.0).inputs(x, y)
    torch.manual_seed(5)
    two = CutMix(beta=1.0).inputs(x, y)
    assert isinstance(one[1], MixedTarget) and 0 <= one[1].lam <= 1
    assert torch.equal(one[0], two[0]) and one[1].lam == two[1].lam
    assert torch.equal(one[1].a, two[1].a) and torch.equal(one[1].b, two[1].b)
    off, target = CutMix(prob=0.0).inputs(x, y)
    assert off is x and target is y


# ---- ADL ---------------------------------------------------------------------------------
def test_adl_masks_on_a_4x4_attention():
    # channel mean of two channels = the attention below
    a = torch.tensor(
        [
            [0.0, 1.0, 2.0, 3.0],
            [4.0, 5.0, 6.0, 7.0],
            [8.0, 9.0, 10.0, 11.0],
            [12.0, 13.0, 14.0, 20.0],
        ]
    )
    f = torch.stack([a - 1.0, a + 1.0])[None]
    layer = AttentionDropout(drop_rate=1.0, threshold=0.6)
    drop, importance = layer.masks(f)
    assert torch.equal(drop[0, 0], (a < 12.0).float())  # 0.6 x max 20
    torch.testing.assert_close(importance[0, 0], torch.sigmoid(a))
    layer.train()
    torch.testing.assert_close(layer(f), f * drop)  # drop_rate 1: always the drop mask
    layer.drop_rate = 0.0
    torch.testing.assert_close(layer(f), f * importance)
    layer.eval()
    assert layer(f) is f  # identity at test


def test_adl_draws_one_choice_per_batch():
    f = torch.rand(4, 3, 5, 5) + 0.1
    layer = AttentionDropout(drop_rate=0.5, threshold=0.9).train()
    drop, importance = layer.masks(f)
    seen = set()
    torch.manual_seed(0)
    for _ in range(40):
        out = layer(f)
        by_drop = [torch.allclose(out[i], f[i] * drop[i]) for i in range(4)]
        by_imp = [torch.allclose(out[i], f[i] * importance[i]) for i in range(4)]
        assert all(by_drop) or all(by_imp)  # the whole batch makes the same choice
        seen.add(all(by_drop))
    assert seen == {True, False}


def test_adl_is_installed_at_the_networks_places_and_refused_elsewhere():
    from wsol.models import build_model

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for name in ADL.networks:
        net = build_model(name, num_classes=3).eval()
        keys = set(net.state_dict())
        with torch.no_grad():
            plain = net(x)
        net = ADL(drop_rate=1.0, threshold=0.5).prepare(net)
        assert len(net.adl) == len(net.adl_places) == 3
        assert set(net.state_dict()) == keys  # no parameters, no state
        with torch.no_grad():
            torch.testing.assert_close(net.eval()(x), plain)  # identity at test
            net.train()
            # training: the masks act (and batch statistics, in the BatchNorm networks)
            assert not torch.allclose(net(x), plain)
    with pytest.raises(
        WSOLError, match=r"method=adl is not defined on model=googlenet_gap; .*vgg16_gap"
    ):
        ADL().prepare(build_model("googlenet_gap", num_classes=3))


def test_adl_places_are_declared_by_exactly_the_networks_it_lists():
    from wsol.models import available, build_model

    declared = {n for n in available() if getattr(build_model(n, num_classes=2), "adl_places", ())}
    assert declared == set(ADL.networks)


# ---- the config group and the main job ---------------------------------------------------
def test_every_method_config_builds():
    from wsol.cli import options

    assert set(options("method")) >= {"cam", "has", "cutmix", "adl"}
    for name in options("method"):
        m = instantiate(compose_config([f"method={name}"]).method)
        assert isinstance(m, Method) and m.config()["name"] == name


DEFINED = [
    ("cam", "tiny_gap"),
    ("has", "tiny_gap"),
    ("cutmix", "tiny_gap"),
    ("adl", "tiny_gap"),
    pytest.param("adl", "resnet50_gap", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("method", "model"), DEFINED)
def test_method_trains_end_to_end(method, model, tmp_path):
    from wsol.pipeline import train_and_evaluate

    args = [a for a in TINY if not a.startswith("model=")]
    cfg = compose_config(
        [*args, f"model={model}", f"method={method}", f"paths.output_dir={tmp_path}"]
    )
    metrics = train_and_evaluate(cfg)
    assert 0 <= metrics["cls_top1_err"] <= 100 and "gt_known_loc" in metrics
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["method"]["name"] == method
    assert json.loads((tmp_path / "metrics.json").read_text())["model"] == model


def test_method_on_an_undefined_network_is_one_line(tmp_path):
    from wsol.pipeline import train_and_evaluate

    cfg = compose_config(
        [*TINY, "method=adl", "model=googlenet_gap", f"paths.output_dir={tmp_path}"]
    )
    with pytest.raises(WSOLError, match=r"^method=adl is not defined on model=googlenet_gap"):
        train_and_evaluate(cfg)
    assert not (tmp_path / "metrics.json").exists()


def test_python_random_is_not_used():
    """The methods draw from torch's (step-seeded) generator only: Python's is untouched."""
    state = random.getstate()
    torch.manual_seed(0)
    HideAndSeek().inputs(torch.ones(2, 3, 8, 8), torch.tensor([0, 1]))
    CutMix().inputs(torch.ones(2, 3, 8, 8), torch.tensor([0, 1]))
    assert random.getstate() == state
