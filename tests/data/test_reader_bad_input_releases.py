"""Bad input in the CUB-200-2011 and ILSVRC 2012 releases' own layouts: every reader
refuses it with a one-line `WSOLError` naming the file, the line and the value (or the
setting to set); boxes partly outside their image are clipped and reported
(docs/DATASETS.md). The wsolevaluation metadata and OpenImages cases are in
test_reader_bad_input.py."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from bad_input import append, edit, outside_symlink, raises, truncate
from tiny_datasets import (
    WNIDS,
    write_cub,
    write_imagenet,
)

from wsol.data.cub import CUBDataset
from wsol.data.imagenet import ImageNetDataset

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
