"""`data=cub`: the CUB-200-2011 release layout, read from a tiny written copy."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from tiny_datasets import CUB_IMAGES, write_cub

from wsol.data import WSOLDataModule
from wsol.data.cub import CUBDataset
from wsol.data.transforms import build_transform
from wsol.errors import WSOLError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def cub_root(tmp_path):
    return write_cub(tmp_path)


def expected(split_flag: int):
    return [row for row in CUB_IMAGES if row[3] == split_flag]


@pytest.mark.parametrize("split,flag", [("train", 1), ("test", 0)])
def test_records_hold_labels_boxes_sizes_and_ids(cub_root, split, flag):
    ds = CUBDataset(split, root=str(cub_root))
    rows = expected(flag)
    assert len(ds) == len(rows)
    assert ds.num_classes == 3 and ds.class_names == ["Alpha", "Beta", "Gamma"]
    for i, (_, path, cid, _, (x, y, w, h), (iw, ih)) in enumerate(rows):
        r = ds[i]
        assert r["id"] == path and r["index"] == i
        assert r["label"] == cid - 1
        assert r["size"] == (ih, iw)
        assert r["mask"] is None
        assert r["boxes"].dtype == torch.float64 and r["boxes"].shape == (1, 4)
        assert r["boxes"][0].tolist() == [x, y, x + w, y + h]
        img = r["image"]
        assert img.dtype == torch.uint8 and img.shape == (3, ih, iw)
        # left half red, right half blue (JPEG: approximately)
        assert img[0, :, 0].float().mean() > 200 and img[2, :, 0].float().mean() < 60
        assert img[2, :, -1].float().mean() > 200 and img[0, :, -1].float().mean() < 60


def test_float_box_is_converted_exactly(cub_root):
    ds = CUBDataset("train", root=str(cub_root))
    # image 3: x=1.5 y=2.5 w=10.25 h=6.5 -> [1.5, 2.5, 11.75, 9.0]
    k = ds.ids.index("002.Beta/Beta_0001.jpg")
    assert ds[k]["boxes"][0].tolist() == [1.5, 2.5, 11.75, 9.0]


def test_annotations_without_decoding_images(cub_root):
    ds = CUBDataset("test", root=str(cub_root), load_images=False)
    r = ds[1]
    assert "image" not in r
    assert r["size"] == (20, 16) and r["boxes"][0].tolist() == [4.0, 1.0, 12.0, 13.0]
    assert ds.image_size(1) == (20, 16)
    full = CUBDataset("test", root=str(cub_root))
    a = full.annotation(1)
    assert "image" not in a and a["size"] == (20, 16)


def test_no_val_split_unless_held_out(cub_root):
    with pytest.raises(WSOLError, match=r"data=cub has no val split.*data.dataset.val_per_class"):
        CUBDataset("val", root=str(cub_root))


def test_val_is_a_seeded_hold_out_of_train(cub_root):
    full = CUBDataset("train", root=str(cub_root))
    val = CUBDataset("val", root=str(cub_root), val_per_class=1, val_seed=3)
    train = CUBDataset("train", root=str(cub_root), val_per_class=1, val_seed=3)
    assert len(val) == 3 and sorted(val.labels.tolist()) == [0, 1, 2]
    assert not set(val.ids) & set(train.ids)
    assert set(val.ids) | set(train.ids) == set(full.ids)
    again = CUBDataset("val", root=str(cub_root), val_per_class=1, val_seed=3)
    assert again.ids == val.ids
    with pytest.raises(WSOLError, match=r"fewer than data\.dataset\.val_per_class=3"):
        CUBDataset("val", root=str(cub_root), val_per_class=3)


def test_eval_transform_gives_the_input_size(cub_root):
    tf = build_transform(False, 32, MEAN, STD, resize_size=256)
    ds = CUBDataset("test", root=str(cub_root), transform=tf)
    for i in range(len(ds)):
        r = ds[i]
        assert r["image"].shape == (3, 32, 32) and r["image"].dtype == torch.float32
        # the ground truth stays in original coordinates
        assert (
            r["boxes"][0].tolist()
            == CUBDataset("test", root=str(cub_root), load_images=False)[i]["boxes"][0].tolist()
        )


def test_train_transform_boxes_follow_the_flip(cub_root):
    s = 32
    tf = build_transform(True, s, MEAN, STD, resize_size=None, flip=True, carry_targets=True)
    ds = CUBDataset("train", root=str(cub_root), transform=tf)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        r = ds[0]  # 20x16, box [2, 3, 12, 11]
        img = r["image"]
        flipped = bool(img[0, :, 0].mean() < img[2, :, 0].mean())  # blue on the left
        sx, sy = s / 20, s / 16
        x0, y0, x1, y1 = 2 * sx, 3 * sy, 12 * sx, 11 * sy
        want = [s - x1, y0, s - x0, y1] if flipped else [x0, y0, x1, y1]
        assert np.allclose(r["train_boxes"][0].tolist(), want, atol=1e-4)
        assert r["boxes"][0].tolist() == [2.0, 3.0, 12.0, 11.0]
        seen.add(flipped)
    assert seen == {True, False}


def test_data_module_batches(cub_root):
    dm = WSOLDataModule(
        partial(CUBDataset, root=str(cub_root)),
        input_size=32,
        resize_size=40,
        batch_size=2,
        val_split=None,
    )
    assert dm.num_classes == 3
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)
    assert batch["size"].tolist() == [[16, 20], [20, 16]]
    assert [b.tolist() for b in batch["boxes"]] == [
        [[0.0, 0.0, 20.0, 16.0]],
        [[4.0, 1.0, 12.0, 13.0]],
    ]
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 3, 32, 32)
