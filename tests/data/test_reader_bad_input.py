"""Bad input: every reader refuses it with a one-line `WSOLError` naming the file, the line
and the value (or the setting to set); nothing is skipped silently. Boxes that extend
outside their image are clipped and reported (docs/DATASETS.md)."""

from __future__ import annotations

import logging
import os
import re

import pytest
from bad_input import append, edit, outside_symlink, raises, truncate
from PIL import ImageFile
from tiny_datasets import (
    write_image,
    write_openimages,
    write_wsol_boxes,
)

from wsol.data.wsol_metadata import WSOLMetadataDataset


def test_truncated_images_are_never_loaded_silently():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ---- wsolevaluation metadata ---------------------------------------------------------
V = "val"
# (id, what to break (base, images, meta), split, stage: init | get, expected message)
META_CASES = [
    (
        "too_few_fields",
        lambda b, i, m: edit(m / V / "class_labels.txt", 2, "002.Beta/b_val_1.png"),
        V,
        "init",
        r"val/class_labels.txt:2: too few fields \(1, expected 2: path,label\): '002.Beta/b_val_1.png'",
    ),
    (
        "too_many_fields",
        lambda b, i, m: edit(m / V / "localization.txt", 1, "001.Alpha/a_val_1.jpg,5,4,14,12,7"),
        V,
        "init",
        r"val/localization.txt:1: too many fields \(6, expected 5: path,x0,y0,x1,y1\): '001.Alpha/a_val_1.jpg,5,4,14,12,7'",
    ),
    (
        "size_not_a_number",
        lambda b, i, m: edit(m / V / "image_sizes.txt", 3, "003.Gamma/c_val_1.jpg,24,abc"),
        V,
        "init",
        r"val/image_sizes.txt:3: height is not an integer: 'abc'",
    ),
    (
        "box_not_a_number",
        lambda b, i, m: edit(m / V / "localization.txt", 2, "002.Beta/b_val_1.png,0,2,9.5x,19"),
        V,
        "init",
        r"val/localization.txt:2: x1 is not an integer: '9.5x'",
    ),
    (
        "label_not_a_number",
        lambda b, i, m: edit(m / V / "class_labels.txt", 1, "001.Alpha/a_val_1.jpg,one"),
        V,
        "init",
        r"val/class_labels.txt:1: class label is not an integer: 'one'",
    ),
    (
        "box_x1_before_x0",
        lambda b, i, m: edit(m / V / "localization.txt", 1, "001.Alpha/a_val_1.jpg,14,4,5,12"),
        V,
        "init",
        r"val/localization.txt:1: box has x1 < x0 or y1 < y0 \(empty\): '001.Alpha/a_val_1.jpg,14,4,5,12'",
    ),
    (
        "box_y1_before_y0",
        lambda b, i, m: edit(m / V / "localization.txt", 1, "001.Alpha/a_val_1.jpg,5,12,14,4"),
        V,
        "init",
        r"val/localization.txt:1: box has x1 < x0 or y1 < y0",
    ),
    (
        "box_outside_the_image",
        lambda b, i, m: edit(m / V / "localization.txt", 1, "001.Alpha/a_val_1.jpg,25,4,30,12"),
        V,
        "init",
        r"val/localization.txt:1: box lies outside its 20x16 \(width x height\) image: '001.Alpha/a_val_1.jpg,25,4,30,12'",
    ),
    (
        "label_out_of_range",
        lambda b, i, m: edit(m / V / "class_labels.txt", 3, "003.Gamma/c_val_1.jpg,3"),
        V,
        "init",
        r"val/class_labels.txt:3: class label '3' is out of range 0..2 \(set data.dataset.num_classes",
    ),
    (
        "label_negative",
        lambda b, i, m: edit(m / V / "class_labels.txt", 2, "002.Beta/b_val_1.png,-1"),
        V,
        "init",
        r"val/class_labels.txt:2: class label '-1' is out of range 0..2",
    ),
    (
        "label_for_an_unknown_id",
        lambda b, i, m: append(m / V / "class_labels.txt", "004.Delta/d.jpg,1"),
        V,
        "init",
        r"val/class_labels.txt:4: image id '004.Delta/d.jpg' is not in .*val/image_ids.txt",
    ),
    (
        "label_missing",
        lambda b, i, m: edit(m / V / "class_labels.txt", 2, None),
        V,
        "init",
        r"val/class_labels.txt has no class label for image id '002.Beta/b_val_1.png' \(.*val/image_ids.txt:2\)",
    ),
    (
        "size_missing",
        lambda b, i, m: edit(m / V / "image_sizes.txt", 1, None),
        V,
        "init",
        r"val/image_sizes.txt has no image size for image id '001.Alpha/a_val_1.jpg'",
    ),
    (
        "box_missing",
        lambda b, i, m: edit(m / V / "localization.txt", 3, None),
        V,
        "init",
        r"val/localization.txt has no box for image id '003.Gamma/c_val_1.jpg' \(.*image_ids.txt:3\)",
    ),
    (
        "box_for_an_unknown_id",
        lambda b, i, m: append(m / V / "localization.txt", "x/y.jpg,1,1,2,2"),
        V,
        "init",
        r"val/localization.txt:4: image id 'x/y.jpg' is not in",
    ),
    (
        "duplicate_image_id",
        lambda b, i, m: append(m / V / "image_ids.txt", "001.Alpha/a_val_1.jpg"),
        V,
        "init",
        r"val/image_ids.txt:4: duplicate image id '001.Alpha/a_val_1.jpg' \(first at line 1\)",
    ),
    (
        "duplicate_label_line",
        lambda b, i, m: append(m / V / "class_labels.txt", "001.Alpha/a_val_1.jpg,0"),
        V,
        "init",
        r"val/class_labels.txt:4: duplicate image id '001.Alpha/a_val_1.jpg' \(first at line 1\)",
    ),
    (
        "duplicate_size_line",
        lambda b, i, m: append(m / V / "image_sizes.txt", "001.Alpha/a_val_1.jpg,20,16"),
        V,
        "init",
        r"val/image_sizes.txt:4: duplicate image id",
    ),
    (
        "blank_line",
        lambda b, i, m: edit(m / V / "class_labels.txt", 2, ""),
        V,
        "init",
        r"val/class_labels.txt:2: blank line",
    ),
    (
        "empty_split",
        lambda b, i, m: (m / V / "image_ids.txt").write_text(""),
        V,
        "init",
        r"val/image_ids.txt is empty: the val split has no images",
    ),
    (
        "no_localization_for_val",
        lambda b, i, m: (m / V / "localization.txt").unlink(),
        V,
        "init",
        r"val/localization.txt does not exist: the val split needs its boxes",
    ),
    (
        "path_climbs_out",
        lambda b, i, m: [
            edit(m / V / f, 1, "../x.jpg" + s)
            for f, s in (("image_ids.txt", ""), ("class_labels.txt", ",0"))
        ],
        V,
        "init",
        r"val/image_ids.txt:1: image path leads outside the data root: '../x.jpg'",
    ),
    (
        "absolute_path",
        lambda b, i, m: edit(m / V / "image_ids.txt", 1, "/etc/passwd"),
        V,
        "init",
        r"val/image_ids.txt:1: image path must be relative to the data root, got the absolute path '/etc/passwd'",
    ),
    (
        "symlink_out_of_root",
        lambda b, i, m: outside_symlink(i / "001.Alpha/a_val_1.jpg"),
        V,
        "get",
        r"val/image_ids.txt:1: '001.Alpha/a_val_1.jpg' leads outside the data root .* \(resolves to .*elsewhere/outside.jpg\)",
    ),
    (
        "image_missing",
        lambda b, i, m: (i / "001.Alpha/a_val_1.jpg").unlink(),
        V,
        "get",
        r"image file .*images/001.Alpha/a_val_1.jpg does not exist \(.*val/image_ids.txt:1\)",
    ),
    (
        "image_is_a_folder",
        lambda b, i, m: [
            (i / "001.Alpha/a_val_1.jpg").unlink(),
            (i / "001.Alpha/a_val_1.jpg").mkdir(),
        ],
        V,
        "get",
        r"image file .*a_val_1.jpg is a folder, not an image",
    ),
    (
        "image_corrupt",
        lambda b, i, m: (i / "001.Alpha/a_val_1.jpg").write_bytes(b"not a jpeg at all" * 10),
        V,
        "get",
        r"image file .*images/001.Alpha/a_val_1.jpg is corrupt or truncated: .*\(.*val/image_ids.txt:1\)",
    ),
    (
        "image_truncated",
        lambda b, i, m: truncate(i / "001.Alpha/a_val_1.jpg"),
        V,
        "get",
        r"image file .*images/001.Alpha/a_val_1.jpg is corrupt or truncated",
    ),
    (
        "image_size_disagrees",
        lambda b, i, m: write_image(i / "001.Alpha/a_val_1.jpg", 21, 16),
        V,
        "get",
        r"image file .*a_val_1.jpg is 21x16 \(width x height\) but .*val/image_sizes.txt:1 says 20x16",
    ),
]


@pytest.mark.parametrize("case", META_CASES, ids=[c[0] for c in META_CASES])
def test_wsol_metadata_refuses(tmp_path, case):
    _, mutate, split, stage, pattern = case
    images, meta = write_wsol_boxes(tmp_path)
    mutate(tmp_path, images, meta)

    def build():
        return WSOLMetadataDataset(split, root=str(images), metadata_root=str(meta), num_classes=3)

    if stage == "init":
        raises(build, pattern)
    else:
        ds = build()
        raises(lambda: ds[0], pattern)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_image(tmp_path):
    images, meta = write_wsol_boxes(tmp_path)
    (images / "001.Alpha/a_val_1.jpg").chmod(0)
    ds = WSOLMetadataDataset(V, root=str(images), metadata_root=str(meta), num_classes=3)
    raises(lambda: ds[0], r"image file .*a_val_1.jpg is not readable: permission denied")


def test_wsol_metadata_root_does_not_exist(tmp_path):
    _, meta = write_wsol_boxes(tmp_path)
    raises(
        lambda: WSOLMetadataDataset(
            "test", root=str(tmp_path / "nope"), metadata_root=str(meta), num_classes=3
        ),
        rf"data.dataset.root={re.escape(str(tmp_path / 'nope'))} does not exist; set data.dataset.root to the folder the image ids are relative to",
    )


def test_wsol_metadata_metadata_root_does_not_exist(tmp_path):
    images, _ = write_wsol_boxes(tmp_path)
    raises(
        lambda: WSOLMetadataDataset(
            "test", root=str(images), metadata_root=str(tmp_path / "meta"), num_classes=3
        ),
        r"data.dataset.metadata_root=.*/meta does not exist; set data.dataset.metadata_root to the wsolevaluation metadata folder",
    )
    raises(
        lambda: WSOLMetadataDataset("test", root=str(images), metadata_root=None),
        r"data.dataset.metadata_root is not set",
    )


def test_wsol_metadata_unknown_split_and_name(tmp_path):
    images, meta = write_wsol_boxes(tmp_path)
    raises(
        lambda: WSOLMetadataDataset("dev", root=str(images), metadata_root=str(meta)),
        r"unknown split 'dev'",
    )
    raises(
        lambda: WSOLMetadataDataset(
            "val", root=str(images), metadata_root=str(meta), dataset_name="COCO"
        ),
        r"unknown data.dataset.dataset_name 'COCO'; valid: CUB, ILSVRC, OpenImages",
    )


def test_box_partly_outside_is_clipped_not_refused(tmp_path, caplog):
    images, meta = write_wsol_boxes(tmp_path)
    edit(meta / V / "localization.txt", 1, "001.Alpha/a_val_1.jpg,5,4,25,12")
    with caplog.at_level(logging.WARNING, logger="wsol.data"):
        ds = WSOLMetadataDataset(V, root=str(images), metadata_root=str(meta), num_classes=3)
    assert ds.clipped == [f"{meta / V / 'localization.txt'}:1"]
    assert ds[0]["boxes"].tolist() == [[5.0, 4.0, 20.0, 13.0]]
    assert "1 box(es) extend outside their image and were clipped" in caplog.text


# ---- OpenImages masks ----------------------------------------------------------------
OI_CASES = [
    (
        "second_ignore_mask",
        lambda r, m: edit(
            m / "test/localization.txt", 2, "test/c0/x0.jpg,test/c0/x0_m2.png,test/c0/x0_ignore.png"
        ),
        "init",
        r"test/localization.txt:2: a second ignore mask for image 'test/c0/x0.jpg' \(only its first line, 1, may name one\): 'test/c0/x0_ignore.png'",
    ),
    (
        "mask_line_malformed",
        lambda r, m: edit(m / "test/localization.txt", 3, "test/c2/x1.jpg,test/c2/x1_m1.png"),
        "init",
        r"test/localization.txt:3: too few fields \(2, expected 3: path,mask_png,ignore_png\)",
    ),
    (
        "mask_path_climbs_out",
        lambda r, m: edit(m / "test/localization.txt", 3, "test/c2/x1.jpg,../x1_m1.png,"),
        "init",
        r"test/localization.txt:3: mask path leads outside the data root: '../x1_m1.png'",
    ),
    (
        "mask_missing",
        lambda r, m: (r / "test/c0/x0_m2.png").unlink(),
        "get",
        r"mask file .*test/c0/x0_m2.png does not exist \(.*test/localization.txt:1\)",
    ),
    (
        "mask_corrupt",
        lambda r, m: (r / "test/c0/x0_ignore.png").write_bytes(b"\x89PNG broken"),
        "get",
        r"mask file .*test/c0/x0_ignore.png is corrupt or unreadable",
    ),
    (
        "mask_sizes_differ",
        lambda r, m: write_image(r / "test/c0/x0_m2.png", 10, 8),
        "get",
        r"mask file .*x0_m2.png is 10x8 but .*x0_m1.png is 20x16",
    ),
    (
        "no_mask_for_an_image",
        lambda r, m: edit(m / "test/localization.txt", 3, None),
        "init",
        r"test/localization.txt has no instance mask for image id 'test/c2/x1.jpg'",
    ),
]


@pytest.mark.parametrize("case", OI_CASES, ids=[c[0] for c in OI_CASES])
def test_openimages_refuses(tmp_path, case):
    _, mutate, stage, pattern = case
    root, meta, _ = write_openimages(tmp_path)
    mutate(root, meta)

    def build():
        return WSOLMetadataDataset(
            "test",
            root=str(root),
            metadata_root=str(meta),
            dataset_name="OpenImages",
            num_classes=3,
        )

    if stage == "init":
        raises(build, pattern)
    else:
        ds = build()
        raises(lambda: ds[0], pattern)
