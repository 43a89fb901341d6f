"""`data=imagenet`: the ILSVRC 2012 release layout with XML or CSV validation annotations."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny_datasets import IMAGENET_VAL, WNIDS, write_imagenet, write_text

from wsol.data.imagenet import ImageNetDataset
from wsol.data.transforms import build_transform
from wsol.errors import WSOLError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def check_val(ds, with_size_from_xml: bool):
    assert len(ds) == 3 and ds.num_classes == 3 and ds.class_names == WNIDS
    for i, (stem, (wnid, (w, h), boxes)) in enumerate(sorted(IMAGENET_VAL.items())):
        r = ds[i]
        assert r["id"] == f"val/{stem}.JPEG" and r["index"] == i
        assert r["label"] == WNIDS.index(wnid)
        assert r["size"] == (h, w) and r["mask"] is None
        assert r["image"].shape == (3, h, w)
        assert r["boxes"].tolist() == [[x0, y0, x1 + 1, y1 + 1] for x0, y0, x1, y1 in boxes]


@pytest.mark.parametrize("source", ["xml", "csv"])
def test_val_records_from_xml_or_csv(tmp_path, source):
    root, xml_dir, csv = write_imagenet(tmp_path)
    ds = ImageNetDataset(
        "val", root=str(root), val_annotations=str(xml_dir if source == "xml" else csv)
    )
    assert ds.box_source == "boxes"
    check_val(ds, source == "xml")
    a = ImageNetDataset(
        "val",
        root=str(root),
        val_annotations=str(xml_dir if source == "xml" else csv),
        load_images=False,
    )
    assert a[2]["size"] == (20, 16) and "image" not in a[2]


def test_val_csv_is_found_in_root_by_default(tmp_path):
    root, _, csv = write_imagenet(tmp_path)
    shutil.copy(csv, root / "LOC_val_solution.csv")
    check_val(ImageNetDataset("val", root=str(root)), False)


def test_val_images_in_class_folders(tmp_path):
    root, xml_dir, _ = write_imagenet(tmp_path)
    for stem, (wnid, _, _) in IMAGENET_VAL.items():
        (root / "val" / wnid).mkdir(exist_ok=True)
        (root / "val" / f"{stem}.JPEG").rename(root / "val" / wnid / f"{stem}.JPEG")
    ds = ImageNetDataset("val", root=str(root), val_annotations=str(xml_dir))
    assert ds[0]["id"] == "val/n01000002/ILSVRC2012_val_00000001.JPEG" and ds[0]["label"] == 1


def test_train_labels_from_folders_and_placeholder_boxes(tmp_path):
    root, _, _ = write_imagenet(tmp_path)
    ds = ImageNetDataset("train", root=str(root))
    assert len(ds) == 6 and ds.box_source == "placeholder"
    assert ds.ids[:2] == [
        f"train/{WNIDS[0]}/{WNIDS[0]}_1.JPEG",
        f"train/{WNIDS[0]}/{WNIDS[0]}_2.JPEG",
    ]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    r = ds[3]
    assert (
        r["label"] == 1
        and r["size"] == (16, 22)
        and r["boxes"].tolist() == [[0.0, 0.0, 22.0, 16.0]]
    )


def test_synset_mapping_sets_the_class_order(tmp_path):
    root, xml_dir, _ = write_imagenet(tmp_path)
    order = [WNIDS[2], WNIDS[0], WNIDS[1]]
    write_text(root / "LOC_synset_mapping.txt", [f"{w} a class, with a comma" for w in order])
    ds = ImageNetDataset("val", root=str(root), val_annotations=str(xml_dir))
    assert ds.class_names == order
    assert ds[0]["label"] == order.index("n01000002")
    tr = ImageNetDataset("train", root=str(root))
    assert tr.labels.tolist() == [1, 1, 2, 2, 0, 0]


def test_transforms(tmp_path):
    root, xml_dir, _ = write_imagenet(tmp_path)
    ev = ImageNetDataset(
        "val",
        root=str(root),
        val_annotations=str(xml_dir),
        transform=build_transform(False, 28, MEAN, STD),
    )
    assert ev[0]["image"].shape == (3, 28, 28) and ev[0]["image"].dtype == torch.float32
    tr = ImageNetDataset(
        "train",
        root=str(root),
        transform=build_transform(True, 28, MEAN, STD, resize_size=32, carry_targets=True),
    )
    r = tr[0]
    assert r["image"].shape == (3, 28, 28) and r["train_boxes"].shape == (1, 4)


def test_test_split_name_points_to_val(tmp_path):
    root, _, _ = write_imagenet(tmp_path)
    with pytest.raises(WSOLError, match=r"unknown split 'test' for data=imagenet.*split 'val'"):
        ImageNetDataset("test", root=str(root))
