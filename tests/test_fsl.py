"""``method=fsl``, the few-shot baseline of Choe et al. (CVPR 2020): the per-pixel
foreground target the data module delivers, the BCE loss against it, the foreground map
in every class column, and the run end to end with its checkpoint scoring the same."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsol.data.datamodule import WSOLDataModule
from wsol.data.synthetic import SyntheticWSOL
from wsol.data.transforms import IGNORE, foreground_target
from wsol.errors import WSOLError
from wsol.methods import method_from_config
from wsol.methods.fsl import FSL, ForegroundHead, foreground_loss
from wsol.models import build_model


# ---- the target --------------------------------------------------------------------------
def test_foreground_fills_the_box_regions():
    """Suite boxes (x1, y1 exclusive) fill exactly their pixels; a fractional box the
    pixels whose centre it holds; a mask is the target as it is, ignore included."""
    got = foreground_target((5, 7), torch.tensor([[1.0, 2.0, 4.0, 5.0], [5.0, 0.0, 7.0, 1.0]]))
    want = np.array(
        [
            [0, 0, 0, 0, 0, 1, 1],
            [0, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(got.numpy(), want)
    assert got.dtype == torch.uint8
    frac = foreground_target((2, 4), torch.tensor([[0.4, 0.0, 1.6, 0.6]]))
    np.testing.assert_array_equal(frac.numpy(), [[1, 1, 0, 0], [0, 0, 0, 0]])
    mask = torch.tensor([[0, 1], [IGNORE, 1]], dtype=torch.uint8)
    assert torch.equal(foreground_target((2, 2), torch.tensor([[0.0, 0.0, 2.0, 2.0]]), mask), mask)


def _module(train_targets: str, **kw) -> WSOLDataModule:
    ds = functools.partial(
        SyntheticWSOL, num_classes=3, image_size=48, train_size=6, val_size=6, test_size=6
    )
    args = dict(input_size=32, batch_size=3, flip=False, train_split="val")
    return WSOLDataModule(ds, train_targets=train_targets, **{**args, **kw})


def test_train_batches_carry_the_foreground_only_when_asked():
    """``boxes``: the record's boxes, scaled with the image, filled; ``foreground``: the
    mask, resized with the image (nearest); ``labels``: no target at all. The evaluation
    splits never carry one."""
    raw = SyntheticWSOL("val", num_classes=3, image_size=48, val_size=6)
    batch = next(iter(_module("boxes").train_dataloader()))
    assert batch["foreground"].shape == (3, 32, 32)
    for b, i in enumerate(batch["index"].tolist()):
        want = foreground_target((32, 32), raw[i]["boxes"] * 32 / 48)
        assert torch.equal(batch["foreground"][b], want)
    batch = next(iter(_module("foreground").train_dataloader()))
    for b, i in enumerate(batch["index"].tolist()):
        mask = torch.as_tensor(raw[i]["mask"])[None]
        want = F.interpolate(mask[None].float(), size=(32, 32), mode="nearest")[0, 0]
        assert torch.equal(batch["foreground"][b], want.to(torch.uint8))
        assert batch["foreground"][b].sum() > 0
    assert "foreground" not in next(iter(_module("labels").train_dataloader()))
    assert "foreground" not in next(iter(_module("boxes").val_dataloader()))


def test_a_holdout_splits_the_trained_on_split_into_train_and_val():
    """``holdout`` (the FSL search's): the val split trained on is cut into two disjoint
    parts by one fixed permutation, val the held-out fraction; test stays whole."""

    def ids(dm, stage):
        ds = dm.dataset(stage)
        return [ds[i]["id"] for i in range(len(ds))]

    whole = _module("foreground")
    assert ids(whole, "train") == ids(whole, "val")
    dm = _module("foreground", holdout=0.5)
    train, val = ids(dm, "train"), ids(dm, "val")
    assert len(train) == len(val) == 3 and not set(train) & set(val)
    assert sorted(train + val) == sorted(ids(whole, "val"))
    assert ids(_module("foreground", holdout=0.5), "val") == val  # the same parts again
    assert ids(_module("foreground", holdout=0.5, holdout_seed=1), "val") != val
    assert len(dm.dataset("test")) == 6 and dm.dataset("val").num_classes == 3
    assert [dm.eval_view("train")[i]["id"] for i in range(3)] == train
    with pytest.raises(WSOLError, match=r"^data.holdout=0.5: holds out part of a split that"):
        _module("labels", holdout=0.5, train_split="train")
    with pytest.raises(WSOLError, match=r"^data.holdout=0.05: holds out 0 of the 6 images"):
        _module("foreground", holdout=0.05).dataset("val")
    with pytest.raises(WSOLError, match=r"^data.holdout=1.0: must be in \[0, 1\)"):
        _module("foreground", holdout=1.0)


def test_a_bad_train_targets_is_one_line():
    with pytest.raises(WSOLError, match=r"^data.train_targets='mask': must be one of labels, "):
        _module("mask")


# ---- the loss and the head ---------------------------------------------------------------
def test_the_loss_is_bce_against_the_foreground_without_the_ignored_pixels():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 1, 3, 3, generator=g, requires_grad=True)
    target = torch.randint(0, 2, (2, 6, 6), generator=g).to(torch.uint8)
    target[0, :2] = IGNORE
    up = F.interpolate(maps, size=(6, 6), mode="bilinear", align_corners=False)[:, 0]
    keep = target != IGNORE
    p, t = torch.sigmoid(up[keep]), target[keep].double()
    want = -(t * torch.log(p.double()) + (1 - t) * torch.log(1 - p.double())).mean()
    got = foreground_loss(maps, target)
    assert torch.allclose(got.double(), want, atol=1e-6)
    got.backward()
    assert maps.grad.abs().sum() > 0
    smooth = foreground_loss(maps, target, label_smoothing=0.2)
    want = F.binary_cross_entropy_with_logits(up[keep], target[keep].float() * 0.8 + 0.1)
    assert torch.allclose(smooth, want)
    none = foreground_loss(maps, torch.full((2, 6, 6), IGNORE, dtype=torch.uint8))
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_the_method_trains_the_foreground_head_on_its_loss():
    method = FSL()
    net = method.prepare(build_model("tiny_gap", num_classes=4)).train()
    assert isinstance(net.head, ForegroundHead) and not net.head.classifies
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = foreground_target((32, 32), torch.tensor([[4.0, 4.0, 20.0, 24.0]])).expand(2, -1, -1)
    images, t = method.inputs(x, target)
    logits = net(images)
    assert logits.shape == (2, 4) and torch.equal(logits, logits[:, :1].expand(-1, 4))
    maps = net.head.maps
    loss = method.loss(logits, t)
    assert torch.allclose(loss, foreground_loss(maps, target))
    loss.backward()
    assert net.head.conv.weight.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="training forward"):
        method.loss(logits, t)  # the map is used once


def test_the_foreground_map_is_the_same_in_every_class_column():
    from wsol.localize.cam import CAM

    net = FSL().prepare(build_model("tiny_gap", num_classes=5)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    classes = torch.tensor([[0, 3, 1, 4], [2, 2, 0, 1]])
    with torch.no_grad():
        f = net.forward_features(x)
        fg = torch.sigmoid(net.head.conv(f))
        maps = CAM()(net, x, f, classes)
    assert maps.shape == (2, 4, *f.shape[2:])
    for j in range(4):
        assert torch.equal(maps[:, j : j + 1], fg)
    assert (maps > 0).all() and (maps < 1).all()


def test_fsl_rebuilds_from_its_config_and_refuses_a_head_without_a_pool():
    net = method_from_config(FSL().config()).prepare(build_model("tiny_gap", num_classes=3))
    assert isinstance(net.head, ForegroundHead) and net.pool == "avg"

    class FCNet(nn.Module):
        name = "fcnet"
        has_cam = False
        head = nn.Linear(4, 3)

    with pytest.raises(WSOLError, match=r"^method=fsl is not defined on model=fcnet: "):
        FSL().prepare(FCNet())


def test_a_batch_without_the_foreground_is_one_line():
    from wsol.models.module import ClassifierModule

    net = FSL().prepare(build_model("tiny_gap", num_classes=3))
    module = ClassifierModule(net, optimizer=torch.optim.SGD, method=FSL())
    batch = {"image": torch.zeros(1, 3, 32, 32), "label": torch.tensor([0])}
    with pytest.raises(WSOLError, match=r"^method=fsl trains on the batch's 'foreground'"):
        module.training_step(batch, 0)
    assert module.validation_step(batch, 0) is None  # no loss against labels


# ---- end to end ----------------------------------------------------------------------------
def test_fsl_trains_on_val_and_its_checkpoint_scores_the_same(tmp_path, capsys):
    """``wsol.run method=fsl``: trained on the val split's foreground, scored by every
    protocol with no classification or top-k number; ``wsol.evaluate ckpt=`` rebuilds
    the foreground head (strict load) and gives the run's numbers."""
    from omegaconf import OmegaConf

    from tests.helpers import TINY, compose_config, rescore_checkpoint
    from wsol.evaluation.scoring import is_guess
    from wsol.pipeline import train_and_evaluate

    run = tmp_path / "run"
    metrics = train_and_evaluate(compose_config([*TINY, "method=fsl", f"paths.output_dir={run}"]))
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.data.train_split == "val" and saved.data.train_targets == "foreground"
    assert not [k for k in metrics if k.startswith("cls_") or is_guess(k)]
    for key in ("gt_known_loc", "maxboxacc_v2", "pxap"):
        assert 0 <= metrics[key] <= 100, key
    header = (run / "predictions.csv").read_text().splitlines()[0].split(",")
    assert "label" in header and not [c for c in header if is_guess(c)]
    ckpt = run / "checkpoints" / "last.ckpt"
    hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["method"] == {"name": "fsl"}
    again = rescore_checkpoint(ckpt, tmp_path / "eval", capsys)
    assert "cls_top1_err" not in again
    for key in ("gt_known_loc", "maxboxacc_v2", "pxap"):
        assert again[key] == metrics[key], key
