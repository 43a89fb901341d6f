"""`data=cub_wsol`, `imagenet_wsol`, `openimages_wsol`: wsolevaluation metadata, read from
tiny written copies, and the real CUB metadata (annotations only)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_datasets import (
    WSOL_BOXES,
    openimages_masks,
    write_openimages,
    write_text,
    write_wsol_boxes,
)

from wsol.data.record import collate
from wsol.data.transforms import build_transform
from wsol.data.wsol_metadata import WSOLMetadataDataset, read_metadata
from wsol.errors import WSOLError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
REAL_CUB = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wsolevaluation-metadata-CUB"
)


def boxes_ds(tmp_path, split, **kw):
    images, meta = write_wsol_boxes(
        tmp_path, **{k: kw.pop(k) for k in ("train_localization", "sizes") if k in kw}
    )
    kw.setdefault("num_classes", 3)
    return WSOLMetadataDataset(split, root=str(images), metadata_root=str(meta), **kw)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_box_records_round_trip_the_inclusive_boxes(tmp_path, split):
    ds = boxes_ds(tmp_path, split)
    rows = WSOL_BOXES[split]
    assert len(ds) == len(rows) and ds.num_classes == 3
    for i, (path, label, (w, h), boxes) in enumerate(rows):
        r = ds[i]
        assert r["id"] == path and r["index"] == i and r["label"] == label
        assert r["size"] == (h, w) and r["mask"] is None
        assert r["image"].shape == (3, h, w) and r["image"].dtype == torch.uint8
        got = r["boxes"]
        assert got.dtype == torch.float64 and got.shape == (len(boxes), 4)
        assert got.tolist() == [[x0, y0, x1 + 1, y1 + 1] for x0, y0, x1, y1 in boxes]
        # and back to wsolevaluation's inclusive integers, exactly
        back = [(int(a), int(b), int(c) - 1, int(d) - 1) for a, b, c, d in got.tolist()]
        assert back == list(boxes)
    assert ds.class_names == ["Alpha", "Beta", "Gamma"]
    assert ds.box_source == "boxes" and ds.clipped == []


def test_train_without_localization_gets_a_whole_image_placeholder(tmp_path):
    ds = boxes_ds(tmp_path, "train", train_localization=False)
    assert ds.box_source == "placeholder"
    for i, (_, _, (w, h), _) in enumerate(WSOL_BOXES["train"]):
        assert ds[i]["boxes"].tolist() == [[0.0, 0.0, float(w), float(h)]]


def test_sizes_come_from_the_images_without_image_sizes_txt(tmp_path):
    ds = boxes_ds(tmp_path, "test", sizes=False)
    for i, (_, _, (w, h), _) in enumerate(WSOL_BOXES["test"]):
        assert ds[i]["size"] == (h, w)
        assert ds.annotation(i)["size"] == (h, w)  # from the header


def test_annotations_only_need_no_image_root(tmp_path):
    _, meta = write_wsol_boxes(tmp_path)
    ds = WSOLMetadataDataset(
        "val", root=None, metadata_root=str(meta), num_classes=3, load_images=False
    )
    r = ds[2]
    assert (
        "image" not in r and r["size"] == (18, 24) and r["boxes"].tolist() == [[3.0, 3.0, 4.0, 4.0]]
    )


def test_val_per_class_keeps_a_seeded_subset(tmp_path):
    rows = {"train": WSOL_BOXES["train"], "test": WSOL_BOXES["test"]}
    rows["val"] = [
        (f"00{c + 1}.C/v{c}_{j}.jpg", c, (20, 16), [(1, 1, 5, 5)])
        for c in range(3)
        for j in range(4)
    ]
    images, meta = write_wsol_boxes(tmp_path, data=rows)
    a = WSOLMetadataDataset(
        "val", root=str(images), metadata_root=str(meta), num_classes=3, val_per_class=2, val_seed=1
    )
    b = WSOLMetadataDataset(
        "val", root=str(images), metadata_root=str(meta), num_classes=3, val_per_class=2, val_seed=1
    )
    assert len(a) == 6 and a.ids == b.ids and sorted(a.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert [a[i]["id"] for i in range(len(a))] == a.ids and [
        a[i]["index"] for i in range(6)
    ] == list(range(6))
    # only val is subsampled
    t = WSOLMetadataDataset(
        "test", root=str(images), metadata_root=str(meta), num_classes=3, val_per_class=2
    )
    assert len(t) == len(rows["test"])


def test_eval_and_train_transforms(tmp_path):
    images, meta = write_wsol_boxes(tmp_path)
    ev = WSOLMetadataDataset(
        "test",
        root=str(images),
        metadata_root=str(meta),
        num_classes=3,
        transform=build_transform(False, 24, MEAN, STD, resize_size=256),
    )
    batch = collate([ev[i] for i in range(len(ev))])
    assert batch["image"].shape == (4, 3, 24, 24)
    assert batch["boxes"][0].tolist() == [[1.0, 2.0, 10.0, 15.0], [10.0, 0.0, 20.0, 8.0]]
    tr = WSOLMetadataDataset(
        "test",
        root=str(images),
        metadata_root=str(meta),
        num_classes=3,
        transform=build_transform(True, 24, MEAN, STD, resize_size=None, carry_targets=True),
    )
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        r = tr[0]  # 20x16 with boxes [1, 2, 10, 15] and [10, 0, 20, 8]
        flipped = bool(r["image"][0, :, 0].mean() < r["image"][2, :, 0].mean())
        sx, sy = 24 / 20, 24 / 16
        want = [
            [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
            for x0, y0, x1, y1 in ([1, 2, 10, 15], [10, 0, 20, 8])
        ]
        if flipped:
            want = [[24 - x1, y0, 24 - x0, y1] for x0, y0, x1, y1 in want]
        assert np.allclose(r["train_boxes"].tolist(), want, atol=1e-4)
        seen.add(flipped)
    assert seen == {True, False}


# ---- OpenImages: masks ---------------------------------------------------------------
def test_openimages_masks_are_or_ed_with_ignore(tmp_path):
    root, meta, m = write_openimages(tmp_path)
    ds = WSOLMetadataDataset(
        "test", root=str(root), metadata_root=str(meta), dataset_name="OpenImages", num_classes=3
    )
    assert ds.box_source == "masks"
    r = ds[0]
    assert r["mask"].dtype == np.uint8 and r["mask"].shape == (16, 20)
    np.testing.assert_array_equal(r["mask"], m["expected"])
    assert set(np.unique(r["mask"]).tolist()) == {0, 1, 255}
    # hand-computed: instance 1 rows 2..5 cols 3..8; instance 2 rows 8..11 cols 10..17 plus (4..5, 8..9)
    assert r["mask"][3, 4] == 1 and r["mask"][9, 15] == 1 and r["mask"][4, 9] == 1
    assert r["mask"][0, 0] == 255 and r["mask"][13, 11] == 255  # ignore, not foreground
    assert r["mask"][15, 19] == 0 and r["mask"][14, 0] == 0
    assert r["size"] == (16, 20) and r["label"] == 0 and r["id"] == "test/c0/x0.jpg"
    assert r["boxes"].tolist() == [[3.0, 2.0, 9.0, 6.0], [8.0, 4.0, 18.0, 12.0]]
    # second image: one instance, no ignore mask
    r1 = ds[1]
    np.testing.assert_array_equal(r1["mask"], (m["inst2"] > 0).astype(np.uint8))
    assert r1["label"] == 2


def test_openimages_train_has_labels_only_and_val_subsampling(tmp_path):
    root, meta, _ = write_openimages(tmp_path)
    tr = WSOLMetadataDataset(
        "train", root=str(root), metadata_root=str(meta), dataset_name="OpenImages", num_classes=3
    )
    assert tr.box_source == "placeholder"
    r = tr[1]
    assert (
        r["mask"] is None
        and r["size"] == (18, 24)
        and r["boxes"].tolist() == [[0.0, 0.0, 24.0, 18.0]]
    )
    assert tr.class_names == ["c0", "c1", "c2"]
    val = WSOLMetadataDataset(
        "val",
        root=str(root),
        metadata_root=str(meta),
        dataset_name="OpenImages",
        num_classes=3,
        val_per_class=1,
    )
    assert len(val) == 3 and val[0]["mask"].shape == (16, 20)


def test_openimages_mask_follows_the_train_flip(tmp_path):
    root, meta, m = write_openimages(tmp_path)
    tf = build_transform(True, 20, MEAN, STD, resize_size=None, carry_targets=True)
    ds = WSOLMetadataDataset(
        "test",
        root=str(root),
        metadata_root=str(meta),
        dataset_name="OpenImages",
        num_classes=3,
        transform=tf,
    )
    # a 20x16 image resized to 20x20: the mask is carried (same size as the image) and
    # flipped with it; the record's own mask stays as annotated
    for seed in range(6):
        torch.manual_seed(seed)
        r = ds[0]
        flipped = bool(r["image"][0, :, 0].mean() < r["image"][2, :, 0].mean())
        tm = r["train_mask"].numpy()
        assert tm.shape == (20, 20)
        col = tm[:, 19] if flipped else tm[:, 0]
        assert (col == 255).any()  # the ignore region touches the left edge of the original
        np.testing.assert_array_equal(r["mask"], m["expected"])


def test_openimages_mask_root_setting(tmp_path):
    root, meta, _ = write_openimages(tmp_path)
    masks = tmp_path / "masks"
    masks.mkdir()
    for p in root.rglob("*.png"):
        target = masks / p.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        p.rename(target)
    ds = WSOLMetadataDataset(
        "test",
        root=str(root),
        metadata_root=str(meta),
        dataset_name="OpenImages",
        num_classes=3,
        mask_root=str(masks),
    )
    assert ds[0]["mask"].shape == (16, 20)
    plain = WSOLMetadataDataset(
        "test", root=str(root), metadata_root=str(meta), dataset_name="OpenImages", num_classes=3
    )
    with pytest.raises(WSOLError, match=r"mask file .*x0_m1.png does not exist"):
        plain[0]


def test_openimages_expected_mask_matches_the_definition():
    m = openimages_masks()
    fg = (m["inst1"] > 0.5) | (m["inst2"] > 0.5)
    want = fg.astype(np.uint8) + 255 * ((m["ignore"] > 0.5) & ~fg).astype(np.uint8)
    np.testing.assert_array_equal(m["expected"], want)


# ---- the real CUB metadata -----------------------------------------------------------
@pytest.mark.skipif(not REAL_CUB.is_dir(), reason=f"{REAL_CUB} is not here")
def test_real_cub_metadata():
    counts = {"train": 5994, "val": 1000, "test": 5794}
    seen_ids = set()
    for split, n in counts.items():
        ann = read_metadata(REAL_CUB, split, 200)
        assert len(ann.ids) == n
        assert ann.clipped == []
        assert ann.labels.min() == 0 and ann.labels.max() == 199
        assert set(ann.labels.tolist()) == set(range(200))
        assert not seen_ids & set(ann.ids)
        seen_ids |= set(ann.ids)
        for b, (h, w) in zip(ann.boxes, ann.sizes):
            if split != "train":
                assert b.shape == (1, 4)
            assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
            assert (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
            assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    ds = WSOLMetadataDataset("test", metadata_root=str(REAL_CUB), load_images=False)
    assert len(ds) == 5794 and ds.num_classes == 200
    assert (
        ds.class_names[0] == "Black_footed_Albatross"
        and ds.class_names[199] == "Common_Yellowthroat"
    )
    r = ds[0]
    assert r["id"] == "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    assert r["boxes"].tolist() == [[60.0, 27.0, 386.0, 332.0]] and r["size"] == (335, 500)


@pytest.mark.skipif(not REAL_CUB.is_dir(), reason=f"{REAL_CUB} is not here")
def test_real_cub_metadata_with_a_label_out_of_range_is_refused(tmp_path):
    # the real file with one bad label: the message names file, line and value
    lines = (REAL_CUB / "val" / "class_labels.txt").read_text().split("\n")
    lines[41] = lines[41].rsplit(",", 1)[0] + ",200"
    d = tmp_path / "val"
    d.mkdir()
    for name in ("image_ids.txt", "image_sizes.txt", "localization.txt"):
        (d / name).write_bytes((REAL_CUB / "val" / name).read_bytes())
    write_text(d / "class_labels.txt", lines)
    with pytest.raises(
        WSOLError, match=r"class_labels.txt:42: class label '200' is out of range 0..199"
    ):
        read_metadata(tmp_path, "val", 200)


def test_clipped_boxes_are_reported(tmp_path, caplog):
    rows = dict(WSOL_BOXES)
    rows["test"] = [
        ("001.Alpha/a.jpg", 0, (20, 16), [(-2, 3, 11, 10), (5, 5, 20, 15)]),
        ("002.Beta/b.jpg", 1, (20, 16), [(0, 0, 19, 15)]),
    ]
    images, meta = write_wsol_boxes(tmp_path, data=rows)
    with caplog.at_level(logging.WARNING, logger="wsol.data"):
        ds = WSOLMetadataDataset("test", root=str(images), metadata_root=str(meta), num_classes=3)
    loc = meta / "test" / "localization.txt"
    assert ds.clipped == [f"{loc}:1", f"{loc}:2"]
    assert (
        "2 box(es) extend outside their image and were clipped" in caplog.text
        and str(loc) in caplog.text
    )
    assert ds[0]["boxes"].tolist() == [[0.0, 3.0, 12.0, 11.0], [5.0, 5.0, 20.0, 16.0]]
    assert ds[1]["boxes"].tolist() == [[0.0, 0.0, 20.0, 16.0]]
