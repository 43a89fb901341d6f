"""The methods that change the network's head and trunk (ACoL, SPG), on small
hand-computed cases: ACoL's erasure exactly where the attention reaches the threshold,
its test map and loss; SPG's masks (ignore value, fallback) and loss against a direct
transcription of the reference's per-image loops; their places on every backbone they
list (slow: full-size networks); a checkpoint rebuilt with the method's layers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsol.errors import WSOLError
from wsol.methods.acol import ACoL, AcolHead
from wsol.methods.base import normalize_maps
from wsol.methods.spg import IGNORE, SPG, attention_loss, spg_mask
from wsol.models import GlobalPool, build_model


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


class _Fixed(nn.Module):
    """Returns fixed maps and records its input (a stand-in classifier)."""

    def __init__(self, maps):
        super().__init__()
        self.maps = maps
        self.seen = []

    def forward(self, f):
        self.seen.append(f.clone())
        return self.maps


# ---- ACoL -------------------------------------------------------------------------------
def test_normalize_maps_is_min_max_per_map_and_zero_for_a_constant_map():
    m = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]]])
    out = normalize_maps(m)
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.equal(out[0, 1], torch.zeros(2, 2))


def test_acol_erases_exactly_where_the_attention_reaches_the_threshold():
    head = AcolHead(2, 3, GlobalPool("avg"), threshold=0.7, width=4)
    # A's map of class 1 for image 0: min 0, max 10 -> normalised 0, .1, .., 1
    a = torch.zeros(1, 3, 2, 4)
    a[0, 1] = torch.tensor([[0.0, 6.9, 7.0, 7.1], [10.0, 3.0, 6.99, 0.0]])
    b = torch.randn(1, 3, 2, 4, generator=_gen())
    head.classifier_A, head.classifier_B = _Fixed(a), _Fixed(b)
    f = torch.rand(1, 2, 2, 4, generator=_gen(1)) + 1
    head.train()
    head.labels = torch.tensor([1])
    logits = head(f)
    kept = torch.tensor([[1.0, 1, 0, 0], [0, 1, 1, 1]])  # 0.69 kept; 0.7 (exactly) erased
    torch.testing.assert_close(head.classifier_B.seen[0], f * kept)
    torch.testing.assert_close(logits, a.mean(dim=(2, 3)))
    torch.testing.assert_close(head.logits_b, b.mean(dim=(2, 3)))
    assert head.labels is None  # consumed by the forward


def test_acol_without_a_label_erases_by_the_argmax_and_does_not_run_b_at_test():
    head = AcolHead(2, 2, GlobalPool("avg"), threshold=0.5, width=4)
    a = torch.zeros(1, 2, 1, 2)
    a[0, 0] = torch.tensor([[1.0, 2.0]])  # class 0 wins; its map erases the right pixel
    head.classifier_A, head.classifier_B = _Fixed(a), _Fixed(torch.zeros(1, 2, 1, 2))
    f = torch.ones(1, 2, 1, 2)
    head.train()(f)
    torch.testing.assert_close(
        head.classifier_B.seen[0], torch.tensor([[[[1.0, 0.0]]] * 2]).view(1, 2, 1, 2)
    )
    head.eval()(f)
    assert len(head.classifier_B.seen) == 1 and head.logits_b is None


def test_acol_cam_is_the_max_of_the_normalised_branches_with_each_columns_erasure():
    torch.manual_seed(0)
    head = AcolHead(4, 3, GlobalPool("avg"), threshold=0.6, width=8).eval()
    f = torch.rand(2, 4, 5, 5, generator=_gen(2))
    classes = torch.tensor([[2, 0], [1, 2]])
    cam = head.cam(f, classes)
    assert cam.shape == (2, 2, 5, 5)
    maps_a = head.classifier_A(f)
    for i in range(2):
        for j in range(2):
            c = int(classes[i, j])
            na = normalize_maps(maps_a[i : i + 1, c : c + 1])
            fb = f[i : i + 1] * (na < 0.6).float()
            nb = normalize_maps(head.classifier_B(fb)[:, c : c + 1])
            torch.testing.assert_close(cam[i, j], torch.maximum(na, nb)[0, 0])


def test_acol_loss_is_the_sum_of_the_two_cross_entropies():
    m = ACoL(width=8)
    net = m.prepare(build_model("tiny_gap", num_classes=3)).train()
    x, y = torch.randn(4, 3, 32, 32, generator=_gen()), torch.tensor([0, 1, 2, 0])
    x, target = m.inputs(x, y)
    logits = net(x)
    logits_b = net.head.logits_b.clone()
    loss = m.loss(logits, target)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y) + F.cross_entropy(logits_b, y))
    with pytest.raises(RuntimeError, match="training forward"):
        m.loss(logits, target)  # branch B's logits are used once


def test_acol_refuses_a_network_it_is_not_defined_on_and_a_bad_threshold():
    with pytest.raises(
        WSOLError, match=r"^method=acol is not defined on model=googlenet_gap; .*vgg16_gap"
    ):
        ACoL().prepare(build_model("googlenet_gap", num_classes=2))
    with pytest.raises(WSOLError, match=r"method.threshold=1.5: must be in \[0, 1\]"):
        ACoL(threshold=1.5)


# ---- SPG --------------------------------------------------------------------------------
def reference_mask(attention, high, low):
    """wsolevaluation's ``get_mask`` (mask_fg's per-image loop, mask_bg), transcribed."""
    mask = torch.full_like(attention, 255.0)
    for i in range(attention.size(0)):
        fg = attention[i] > high
        if torch.sum(fg.float()).item() < 30:
            fg = attention[i] > torch.max(attention[i]) * 0.7
        mask[i][fg] = 1.0
    mask[attention < low] = 0.0
    return mask


def test_spg_mask_foreground_background_ignore_and_fallback():
    a = torch.zeros(2, 1, 8, 8)
    a[0, 0, :4] = 0.9  # 32 pixels > 0.7: foreground as is
    a[0, 0, 4:, :4] = 0.3  # ignored (between low and high)
    a[0, 0, 4:, 4:] = 0.005  # background
    a[1, 0] = 0.4  # no pixel > 0.7 ...
    a[1, 0, 0, :5] = 0.6  # ... so foreground is > 0.7 x 0.6 = 0.42: these 5
    a[1, 0, 7, 7] = 0.0
    mask = spg_mask(a, high=0.7, low=0.01)
    assert (mask[0, 0, :4] == 1).all() and (mask[0, 0, 4:, :4] == IGNORE).all()
    assert (mask[0, 0, 4:, 4:] == 0).all()
    assert (mask[1, 0, 0, :5] == 1).all() and mask[1, 0, 7, 7] == 0
    assert (mask[1, 0, 1:7] == IGNORE).all()
    torch.testing.assert_close(mask, reference_mask(a, 0.7, 0.01))


def test_spg_mask_equals_the_reference_loop_on_random_maps():
    g = _gen(3)
    for high, low in ((0.7, 0.01), (0.5, 0.05), (0.7, 0.1), (0.99, 0.3)):
        a = torch.rand(6, 1, 12, 12, generator=g) ** 3
        torch.testing.assert_close(spg_mask(a, high, low), reference_mask(a, high, low))


def test_attention_loss_leaves_the_ignored_pixels_out_and_is_zero_when_all_are():
    logits = torch.randn(1, 1, 3, 3, generator=_gen(), requires_grad=True)
    mask = torch.full((1, 1, 3, 3), IGNORE)
    mask[0, 0, 0, 0], mask[0, 0, 1, 1] = 1.0, 0.0
    want = F.binary_cross_entropy_with_logits(
        logits[0, 0, [0, 1], [0, 1]], torch.tensor([1.0, 0.0])
    )
    torch.testing.assert_close(attention_loss(logits, mask), want)
    none = attention_loss(logits, torch.full((1, 1, 3, 3), IGNORE))
    none.backward()
    assert none.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_spg_loss_is_the_references_formula():
    torch.manual_seed(0)
    m = SPG(mask_size=24)
    net = m.prepare(build_model("tiny_gap", num_classes=3)).train()
    x, y = torch.randn(4, 3, 32, 32, generator=_gen()), torch.tensor([0, 1, 2, 1])
    x, target = m.inputs(x, y)
    logits = net(x)
    br = net.spg
    f, s1, s2, c = br.features, br.side1, br.side2, br.logits_c
    assert (s1.shape, s2.shape, c.shape) == ((4, 1, 8, 8), (4, 1, 4, 4), (4, 1, 4, 4))
    loss = m.loss(logits, target)

    def up(t):
        return F.interpolate(t, size=(24, 24), mode="bilinear", align_corners=False)

    def bce(lo, mask):
        pos = mask.view(-1, 1) < 255.0
        return nn.BCEWithLogitsLoss()(up(lo).squeeze(1).reshape(-1, 1)[pos], mask.view(-1, 1)[pos])

    feat_map = F.conv2d(f, net.head.fc.weight[:, :, None, None], net.head.fc.bias)
    att = normalize_maps(up(feat_map)[torch.arange(4), y][:, None])
    b2i = torch.sigmoid(up(s2))
    fused = (torch.sigmoid(up(s1)) + torch.sigmoid(up(s2))) / 2
    want = (
        F.cross_entropy(logits, y)
        + bce(s2, reference_mask(att, 0.7, 0.01))
        + bce(s1, reference_mask(b2i, 0.5, 0.05))
        + bce(c, reference_mask(fused, 0.7, 0.1))
    )
    torch.testing.assert_close(loss, want)
    assert br.features is None  # cleared for the next step


def test_spg_branches_act_in_training_only_and_the_test_map_is_the_cam():
    m = SPG()
    net = m.prepare(build_model("tiny_gap", num_classes=3)).eval()
    x = torch.randn(2, 3, 32, 32, generator=_gen())
    with torch.no_grad():
        net(x)
    assert net.spg.side1 is None and net.spg.features is None
    assert any(k.startswith("spg.") for k in net.state_dict())
    assert net.is_new_parameter("spg.c.0.weight") and net.has_cam


# ---- places on every backbone, and checkpoints ------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ACoL.networks)
def test_acol_and_spg_build_on_every_backbone_they_list(name):
    x = torch.randn(2, 3, 96, 96, generator=_gen())
    y = torch.tensor([0, 1])
    for method in (ACoL(), SPG(mask_size=32)):
        kw = {"width": 8} if name == "tiny_gap" else {}
        net = method.prepare(build_model(name, num_classes=3, **kw)).train()
        x_, t = method.inputs(x, y)
        loss = method.loss(net(x_), t)
        loss.backward()
        assert torch.isfinite(loss)
        net.eval()
        with torch.no_grad():
            f = net.forward_features(x)
            cam = net.cam(f, torch.tensor([[0, 2], [1, 0]]))
        assert cam.shape[:2] == (2, 2) and torch.isfinite(cam).all()


def test_the_tiny_network_declares_both_methods():
    for method in (ACoL(width=8), SPG(mask_size=16)):
        net = method.prepare(build_model("tiny_gap", num_classes=3)).train()
        x, t = method.inputs(torch.randn(2, 3, 32, 32, generator=_gen()), torch.tensor([0, 2]))
        method.loss(net(x), t).backward()


def test_vgg_trunks_are_the_references():
    """The ACoL and SPG VGGs as wsolevaluation's configs_dict builds them (no forward)."""
    spg = build_model("vgg16_gap", num_classes=3, large_feature_map=True)
    acol = copy.deepcopy(spg)
    acol.large_feature_map = False
    assert acol.adapt_trunk("acol") == 512
    f = acol.features
    pools = [(i, m) for i, m in enumerate(f) if isinstance(m, nn.MaxPool2d)]
    assert [(m.kernel_size, m.stride, m.padding) for _, m in pools] == [(3, 2, 1)] * 4 + [(3, 1, 1)]
    assert isinstance(f[-1], nn.AvgPool2d) and not hasattr(f, "cam_conv")
    assert spg.adapt_trunk("spg") == 512
    assert isinstance(spg.features[23], nn.Identity)
    assert [m.out_channels for m in spg.features.spg_a3 if isinstance(m, nn.Conv2d)] == [512, 512]
    assert spg.is_new_parameter("features.spg_a3.0.weight")


@pytest.mark.parametrize("method", ["acol", "spg"])
def test_method_trains_and_its_checkpoint_scores_the_same(method, tmp_path, capsys):
    """``wsol.run method=NAME`` end to end on the tiny network; ``wsol.evaluate ckpt=``
    rebuilds the network with the method's layers (strict load) and gives the run's
    numbers on the same maps."""

    from tests.helpers import TINY, compose_config, rescore_checkpoint
    from wsol.pipeline import train_and_evaluate

    run = tmp_path / "run"
    cfg = compose_config(
        [
            *TINY,
            f"method={method}",
            "method.width=16" if method == "acol" else "method.mask_size=32",
            f"paths.output_dir={run}",
        ]
    )
    metrics = train_and_evaluate(cfg)
    ckpt = run / "checkpoints" / "last.ckpt"
    hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["method"]["name"] == method
    again = rescore_checkpoint(ckpt, tmp_path / "eval", capsys)
    for key in ("cls_top1_err", "gt_known_loc", "maxboxacc_v2"):
        assert again[key] == metrics[key], key
