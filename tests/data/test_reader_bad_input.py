"""Bad input: every reader refuses it with a one-line `WSOLError` naming the file, the line
and the value (or the setting to set); nothing is skipped silently. Boxes that extend
outside their image are clipped and reported (docs/DATASETS.md)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
from PIL import ImageFile
from tiny_datasets import (
    WNIDS,
    write_cub,
    write_image,
    write_imagenet,
    write_openimages,
    write_wsol_boxes,
)

from wsol.data.cub import CUBDataset
from wsol.data.imagenet import ImageNetDataset
from wsol.data.wsol_metadata import WSOLMetadataDataset
from wsol.errors import WSOLError


def edit(path: Path, line: int, new: str | None) -> None:
    """Replace (or with None delete) 1-based ``line`` of a text file."""
    lines = path.read_text().split("\n")
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    path.write_text("\n".join(lines))


def append(path: Path, line: str) -> None:
    text = path.read_text()
    path.write_text(text + ("" if text.endswith("\n") else "\n") + line + "\n")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def outside_symlink(path: Path) -> None:
    """Replace an image by a symbolic link to an image outside the data root."""
    target = path.parents[3] / "elsewhere" / "outside.jpg"
    write_image(target, 20, 16)
    path.unlink()
    os.symlink(target, path)


def raises(fn, pattern: str) -> str:
    with pytest.raises(WSOLError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    return msg


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


# ---- CUB-200-2011 release ------------------------------------------------------------
CUB_CASES = [
    (
        "images_line_malformed",
        lambda r: edit(r / "images.txt", 2, "2"),
        "init",
        r"images.txt:2: too few fields \(expected 2: <image_id> <path>\): '2'",
    ),
    (
        "image_id_not_a_number",
        lambda r: edit(r / "images.txt", 2, "two 001.Alpha/Alpha_0002.jpg"),
        "init",
        r"images.txt:2: image id is not an integer: 'two'",
    ),
    (
        "box_line_too_short",
        lambda r: edit(r / "bounding_boxes.txt", 2, "2 0.0 0.0 20.0"),
        "init",
        r"bounding_boxes.txt:2: too few fields \(4, expected 5: <image_id> <x> <y> <width> <height>\): '2 0.0 0.0 20.0'",
    ),
    (
        "box_line_too_long",
        lambda r: edit(r / "bounding_boxes.txt", 2, "2 0.0 0.0 20.0 16.0 1"),
        "init",
        r"bounding_boxes.txt:2: too many fields",
    ),
    (
        "box_not_a_number",
        lambda r: edit(r / "bounding_boxes.txt", 3, "3 1.5 2.5 wide 6.5"),
        "init",
        r"bounding_boxes.txt:3: width is not a number: 'wide'",
    ),
    (
        "box_nan",
        lambda r: edit(r / "bounding_boxes.txt", 3, "3 1.5 2.5 nan 6.5"),
        "init",
        r"bounding_boxes.txt:3: width is not a finite number: 'nan'",
    ),
    (
        "box_negative_width",
        lambda r: edit(r / "bounding_boxes.txt", 1, "1 12.0 3.0 -10.0 8.0"),
        "init",
        r"bounding_boxes.txt:1: box has x1 < x0 or y1 < y0 \(empty\): '1 12.0 3.0 -10.0 8.0'",
    ),
    (
        "class_id_zero",
        lambda r: edit(r / "image_class_labels.txt", 4, "4 0"),
        "init",
        r"image_class_labels.txt:4: class id '0' is out of range 1..3",
    ),
    (
        "class_id_too_big",
        lambda r: edit(r / "image_class_labels.txt", 4, "4 4"),
        "init",
        r"image_class_labels.txt:4: class id '4' is out of range 1..3",
    ),
    (
        "unknown_image_id",
        lambda r: append(r / "image_class_labels.txt", "99 1"),
        "init",
        r"image_class_labels.txt:10: image id 99 is not in images.txt: '99 1'",
    ),
    (
        "id_missing_from_split_file",
        lambda r: edit(r / "train_test_split.txt", 9, None),
        "init",
        r"train_test_split.txt has no line for image id 9 of images.txt",
    ),
    (
        "duplicate_image_id",
        lambda r: append(r / "images.txt", "3 002.Beta/other.jpg"),
        "init",
        r"images.txt:10: duplicate image id 3 \(first at line 3\)",
    ),
    (
        "duplicate_box",
        lambda r: append(r / "bounding_boxes.txt", "5 0 0 1 1"),
        "init",
        r"bounding_boxes.txt:10: duplicate image id 5 \(first at line 5\)",
    ),
    (
        "split_value",
        lambda r: edit(r / "train_test_split.txt", 2, "2 yes"),
        "init",
        r"train_test_split.txt:2: is_training_image must be 1 or 0, got 'yes'",
    ),
    (
        "class_out_of_order",
        lambda r: edit(r / "classes.txt", 2, "3 002.Beta"),
        "init",
        r"classes.txt:2: class id '3' out of order \(expected 2\)",
    ),
    (
        "path_climbs_out",
        lambda r: edit(r / "images.txt", 1, "1 ../../secret.jpg"),
        "init",
        r"images.txt:1: image path leads outside the data root: '../../secret.jpg'",
    ),
    (
        "empty_split",
        lambda r: (r / "train_test_split.txt").write_text(
            "".join(f"{i} 1\n" for i in range(1, 10))
        ),
        "init",
        r"train_test_split.txt: the test split of data=cub is empty",
    ),
    (
        "image_missing",
        lambda r: (r / "images/001.Alpha/Alpha_0002.jpg").unlink(),
        "get",
        r"image file .*images/001.Alpha/Alpha_0002.jpg does not exist \(.*images.txt:2\)",
    ),
    (
        "image_truncated",
        lambda r: truncate(r / "images/001.Alpha/Alpha_0002.jpg"),
        "get",
        r"image file .*Alpha_0002.jpg is corrupt or truncated",
    ),
    (
        "symlink_out_of_root",
        lambda r: outside_symlink(r / "images/001.Alpha/Alpha_0002.jpg"),
        "get",
        r"images.txt:2: '001.Alpha/Alpha_0002.jpg' leads outside the data root",
    ),
    (
        "box_outside_the_image",
        lambda r: edit(r / "bounding_boxes.txt", 2, "2 30.0 0.0 5.0 5.0"),
        "get",
        r"bounding_boxes.txt:2: box lies outside its 20x16 \(width x height\) image: '2 30.0 0.0 5.0 5.0'",
    ),
]


@pytest.mark.parametrize("case", CUB_CASES, ids=[c[0] for c in CUB_CASES])
def test_cub_refuses(tmp_path, case):
    _, mutate, stage, pattern = case
    root = write_cub(tmp_path)
    mutate(root)
    if stage == "init":
        raises(lambda: CUBDataset("test", root=str(root)), pattern)
    else:
        ds = CUBDataset("test", root=str(root))
        raises(lambda: ds[0], pattern)


def test_cub_root_does_not_exist(tmp_path):
    missing = tmp_path / "x" / "CUB_200_2011"
    raises(
        lambda: CUBDataset("train", root=str(missing)),
        rf"^data.dataset.root={re.escape(str(missing))} does not exist; set data.dataset.root to the CUB_200_2011 folder",
    )


def test_cub_root_is_not_the_release_folder(tmp_path):
    raises(
        lambda: CUBDataset("train", root=str(tmp_path)),
        r"images.txt does not exist \(data.dataset.root=.* must be the CUB_200_2011 folder",
    )


def test_cub_box_partly_outside_is_clipped_and_reported(tmp_path, caplog):
    root = write_cub(tmp_path)
    edit(root / "bounding_boxes.txt", 2, "2 -1.0 2.0 25.0 10.0")
    ds = CUBDataset("test", root=str(root))
    with caplog.at_level(logging.WARNING, logger="wsol.data"):
        r = ds[0]
    assert r["boxes"].tolist() == [[0.0, 2.0, 20.0, 12.0]]
    assert ds.clipped == [f"{root / 'bounding_boxes.txt'}:2"]
    assert "clipped" in caplog.text and "bounding_boxes.txt" in caplog.text


# ---- ILSVRC 2012 release -------------------------------------------------------------
STEM = "ILSVRC2012_val_00000001"


def xml_edit(old: str, new: str, count: int = 1):
    def f(base: Path, root: Path):
        p = base / "val_xml" / f"{STEM}.xml"
        p.write_text(p.read_text().replace(old, new, count))

    return f


IMAGENET_XML_CASES = [
    (
        "mixed_classes",
        xml_edit(
            "<name>n01000002</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>12",
            "<name>n01000003</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>12",
        ),
        rf"{STEM}.xml:26: object of class 'n01000003' in an image whose first object is 'n01000002'; ILSVRC val images have one class",
    ),
    (
        "malformed_xml",
        xml_edit("</size>", "</sise>"),
        rf"{STEM}.xml:11: malformed XML: mismatched tag",
    ),
    (
        "not_a_number",
        xml_edit("<xmin>1</xmin>", "<xmin>one</xmin>"),
        rf"{STEM}.xml:19: <xmin> is not an integer: 'one'",
    ),
    (
        "xmax_before_xmin",
        xml_edit("<xmax>10</xmax>", "<xmax>0</xmax>"),
        rf"{STEM}.xml:18: box has x1 < x0 or y1 < y0 \(empty\): 'xmin=1 ymin=2 xmax=0 ymax=12'",
    ),
    (
        "no_size",
        lambda b, r: (xml_edit("<size>", "<dims>")(b, r), xml_edit("</size>", "</dims>")(b, r)),
        rf"{STEM}.xml:1: <annotation> has no <size> element\(s\), expected one",
    ),
    (
        "no_object",
        lambda b, r: (b / "val_xml" / f"{STEM}.xml").write_text(
            "<annotation><size><width>20</width><height>16</height></size></annotation>"
        ),
        rf"{STEM}.xml: no <object>",
    ),
    (
        "unknown_class",
        xml_edit("n01000002", "n09999999", 2),
        rf"{STEM}.xml: class 'n09999999' is not in .*train",
    ),
    (
        "box_outside",
        xml_edit(
            "<xmin>12</xmin>\n\t\t\t<ymin>3</ymin>\n\t\t\t<xmax>19",
            "<xmin>40</xmin>\n\t\t\t<ymin>3</ymin>\n\t\t\t<xmax>45",
        ),
        rf"{STEM}.xml:30: box lies outside its 20x16 \(width x height\) image: 'xmin=40 ymin=3 xmax=45 ymax=15'",
    ),
    (
        "image_without_annotation",
        lambda b, r: (b / "val_xml" / "ILSVRC2012_val_00000002.xml").unlink(),
        r"image .*val/ILSVRC2012_val_00000002.JPEG has no annotation in .*val_xml",
    ),
    (
        "annotation_without_image",
        lambda b, r: (r / "val" / "ILSVRC2012_val_00000003.JPEG").unlink(),
        r"ILSVRC2012_val_00000003.xml: annotates 'ILSVRC2012_val_00000003' but .*val has no such image",
    ),
    (
        "non_image_in_val",
        lambda b, r: (r / "val" / "notes.txt").write_text("x"),
        r"val/notes.txt is not an image file",
    ),
]


@pytest.mark.parametrize("case", IMAGENET_XML_CASES, ids=[c[0] for c in IMAGENET_XML_CASES])
def test_imagenet_xml_refuses(tmp_path, case):
    _, mutate, pattern = case
    root, xml_dir, _ = write_imagenet(tmp_path)
    mutate(tmp_path, root)
    raises(lambda: ImageNetDataset("val", root=str(root), val_annotations=str(xml_dir)), pattern)


def csv_line(line: int, new: str | None):
    return lambda b: edit(b / "LOC_val_solution.csv", line, new)


IMAGENET_CSV_CASES = [
    (
        "bad_header",
        csv_line(1, "ImageId,Boxes"),
        r"LOC_val_solution.csv:1: expected the header 'ImageId,PredictionString', got 'ImageId,Boxes'",
    ),
    (
        "groups_not_of_five",
        csv_line(3, "ILSVRC2012_val_00000002,n01000001 0 0 23"),
        r"LOC_val_solution.csv:3: PredictionString must be groups of 5 values 'wnid x0 y0 x1 y1', got 4 value\(s\): 'n01000001 0 0 23'",
    ),
    (
        "not_a_number",
        csv_line(3, "ILSVRC2012_val_00000002,n01000001 0 0 2x3 17"),
        r"LOC_val_solution.csv:3: x1 is not an integer: '2x3'",
    ),
    (
        "too_many_fields",
        csv_line(3, "ILSVRC2012_val_00000002,n01000001 0 0 23 17,extra"),
        r"LOC_val_solution.csv:3: too many fields \(expected 2: ImageId,PredictionString\)",
    ),
    (
        "mixed_classes",
        csv_line(2, "ILSVRC2012_val_00000001,n01000002 1 2 10 12 n01000001 12 3 19 15"),
        r"LOC_val_solution.csv:2: box of class 'n01000001' in an image whose first box is 'n01000002'",
    ),
    (
        "duplicate_image",
        lambda b: append(b / "LOC_val_solution.csv", "ILSVRC2012_val_00000002,n01000001 0 0 5 5"),
        r"LOC_val_solution.csv:5: duplicate ImageId 'ILSVRC2012_val_00000002' \(first at line 3\)",
    ),
    (
        "y1_before_y0",
        csv_line(4, "ILSVRC2012_val_00000003,n01000003 4 16 9 4"),
        r"LOC_val_solution.csv:4: box has x1 < x0 or y1 < y0 \(empty\): 'n01000003 4 16 9 4'",
    ),
]


@pytest.mark.parametrize("case", IMAGENET_CSV_CASES, ids=[c[0] for c in IMAGENET_CSV_CASES])
def test_imagenet_csv_refuses(tmp_path, case):
    _, mutate, pattern = case
    root, _, csv = write_imagenet(tmp_path)
    mutate(tmp_path)
    raises(lambda: ImageNetDataset("val", root=str(root), val_annotations=str(csv)), pattern)


def test_imagenet_csv_box_outside_is_refused_when_the_image_is_read(tmp_path):
    root, _, csv = write_imagenet(tmp_path)
    edit(csv, 4, "ILSVRC2012_val_00000003,n01000003 16 4 20 16")  # the image is 16 wide
    ds = ImageNetDataset("val", root=str(root), val_annotations=str(csv))
    raises(
        lambda: ds[2],
        r"LOC_val_solution.csv:4: box lies outside its 16x20 \(width x height\) image: 'n01000003 16 4 20 16'",
    )


def test_imagenet_box_partly_outside_is_clipped(tmp_path, caplog):
    root, _, csv = write_imagenet(tmp_path)
    edit(
        csv, 4, "ILSVRC2012_val_00000003,n01000003 4 4 9 20"
    )  # ymax 20: one past an inclusive 0..19
    ds = ImageNetDataset("val", root=str(root), val_annotations=str(csv))
    with caplog.at_level(logging.WARNING, logger="wsol.data"):
        assert ds[2]["boxes"].tolist() == [[4.0, 4.0, 10.0, 20.0]]
    assert ds.clipped == [f"{csv}:4"] and "clipped" in caplog.text


def test_imagenet_settings(tmp_path):
    root, xml_dir, _ = write_imagenet(tmp_path)
    raises(
        lambda: ImageNetDataset("val", root=str(tmp_path / "none")),
        r"data.dataset.root=.*none does not exist; set data.dataset.root to the ILSVRC 2012 folder holding train/ and val/",
    )
    raises(
        lambda: ImageNetDataset("val", root=str(root)),
        r"data.dataset.val_annotations is not set; set it to the devkit's val XML folder",
    )
    raises(
        lambda: ImageNetDataset("val", root=str(root), val_annotations=str(tmp_path / "x.csv")),
        r"data.dataset.val_annotations=.*x.csv does not exist",
    )
    raises(
        lambda: ImageNetDataset(
            "val",
            root=str(root),
            val_annotations=str(xml_dir),
            synset_mapping=str(tmp_path / "m.txt"),
        ),
        r"data.dataset.synset_mapping=.*m.txt does not exist",
    )


def test_imagenet_train_refuses_strays(tmp_path):
    root, _, _ = write_imagenet(tmp_path)
    (root / "train" / WNIDS[1] / "readme.txt").write_text("x")
    raises(
        lambda: ImageNetDataset("train", root=str(root)),
        rf"train/{WNIDS[1]}/readme.txt is not an image file",
    )
    (root / "train" / WNIDS[1] / "readme.txt").unlink()
    (root / "train" / "n01000004").mkdir()
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} x\n" for w in WNIDS))
    raises(
        lambda: ImageNetDataset("train", root=str(root)),
        r"train/n01000004: class folder 'n01000004' is not in .*LOC_synset_mapping.txt",
    )


def test_imagenet_truncated_val_image(tmp_path):
    root, xml_dir, _ = write_imagenet(tmp_path)
    truncate(root / "val" / f"{STEM}.JPEG")
    ds = ImageNetDataset("val", root=str(root), val_annotations=str(xml_dir))
    raises(
        lambda: ds[0], rf"image file .*val/{STEM}.JPEG is corrupt or truncated: .*\(.*{STEM}.xml\)"
    )
