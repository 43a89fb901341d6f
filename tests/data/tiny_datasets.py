"""Tiny data sets written in the real layouts (CUB-200-2011 release, wsolevaluation
metadata with boxes or masks, ILSVRC 2012 folders with XML or CSV annotations), with the
values the readers must return.

Every image has known content: its left half red, its right half blue, so a horizontal
flip is visible in the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def write_image(path: Path, width: int, height: int) -> None:
    """Left half red, right half blue; JPEG (quality 95) or PNG by the suffix."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 2] = RED
    arr[:, width // 2 :] = BLUE
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=95)
    else:
        im.save(path)


def write_text(path: Path, lines: list[str], trailing_newline: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))


def write_mask(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


# ---- CUB-200-2011 release --------------------------------------------------------------
# (image id, path, class id (1-based), is_train, (x, y, w, h), (width, height))
CUB_IMAGES = [
    (1, "001.Alpha/Alpha_0001.jpg", 1, 1, (2.0, 3.0, 10.0, 8.0), (20, 16)),
    (2, "001.Alpha/Alpha_0002.jpg", 1, 0, (0.0, 0.0, 20.0, 16.0), (20, 16)),
    (3, "002.Beta/Beta_0001.jpg", 2, 1, (1.5, 2.5, 10.25, 6.5), (24, 18)),
    (4, "002.Beta/Beta_0002.jpg", 2, 0, (4.0, 1.0, 8.0, 12.0), (16, 20)),
    (5, "003.Gamma/Gamma_0001.jpg", 3, 1, (0.0, 0.0, 5.0, 5.0), (20, 16)),
    (6, "003.Gamma/Gamma_0002.jpg", 3, 0, (10.0, 8.0, 9.0, 7.0), (20, 16)),
    (7, "001.Alpha/Alpha_0003.jpg", 1, 1, (3.0, 4.0, 6.0, 6.0), (20, 16)),
    (8, "002.Beta/Beta_0003.jpg", 2, 1, (5.0, 5.0, 5.0, 5.0), (24, 18)),
    (9, "003.Gamma/Gamma_0003.jpg", 3, 1, (6.0, 2.0, 4.0, 9.0), (16, 20)),
]


def write_cub(base: Path, images=CUB_IMAGES) -> Path:
    root = base / "CUB_200_2011"
    write_text(root / "classes.txt", ["1 001.Alpha", "2 002.Beta", "3 003.Gamma"])
    write_text(root / "images.txt", [f"{i} {p}" for i, p, *_ in images])
    write_text(root / "image_class_labels.txt", [f"{i} {c}" for i, _, c, *_ in images])
    write_text(root / "train_test_split.txt", [f"{i} {t}" for i, _, _, t, *_ in images])
    write_text(
        root / "bounding_boxes.txt",
        [f"{i} {x} {y} {w} {h}" for i, _, _, _, (x, y, w, h), _ in images],
    )
    for _, p, _, _, _, (w, h) in images:
        write_image(root / "images" / p, w, h)
    return root


# ---- wsolevaluation metadata with boxes (CUB / ILSVRC) ---------------------------------
# split -> [(path, label, (width, height), [inclusive boxes x0,y0,x1,y1])]
WSOL_BOXES = {
    "train": [
        ("001.Alpha/a_train_1.jpg", 0, (20, 16), [(2, 3, 11, 10)]),
        ("002.Beta/b_train_1.jpg", 1, (24, 18), [(0, 0, 23, 17)]),
        ("003.Gamma/c_train_1.png", 2, (16, 20), [(1, 1, 4, 4)]),
    ],
    "val": [
        ("001.Alpha/a_val_1.jpg", 0, (20, 16), [(5, 4, 14, 12)]),
        ("002.Beta/b_val_1.png", 1, (16, 20), [(0, 2, 9, 19)]),
        ("003.Gamma/c_val_1.jpg", 2, (24, 18), [(3, 3, 3, 3)]),
    ],
    "test": [
        ("001.Alpha/a_test_1.jpg", 0, (20, 16), [(1, 2, 9, 14), (10, 0, 19, 7)]),
        ("002.Beta/b_test_1.png", 1, (24, 18), [(4, 5, 20, 16)]),
        ("003.Gamma/c_test_1.jpg", 2, (16, 20), [(0, 0, 15, 19)]),
        ("003.Gamma/c_test_2.jpg", 2, (20, 16), [(7, 6, 12, 10)]),
    ],
}


def write_wsol_boxes(
    base: Path, data=WSOL_BOXES, train_localization: bool = True, sizes: bool = True
) -> tuple[Path, Path]:
    """Images under base/images, metadata under base/metadata/{train,val,test}."""
    images, meta = base / "images", base / "metadata"
    for split, rows in data.items():
        d = meta / split
        write_text(d / "image_ids.txt", [p for p, *_ in rows], trailing_newline=False)
        write_text(d / "class_labels.txt", [f"{p},{c}" for p, c, *_ in rows])
        if sizes:
            write_text(d / "image_sizes.txt", [f"{p},{w},{h}" for p, _, (w, h), _ in rows])
        if split != "train" or train_localization:
            write_text(
                d / "localization.txt",
                [f"{p},{x0},{y0},{x1},{y1}" for p, _, _, bs in rows for x0, y0, x1, y1 in bs],
            )
        for p, _, (w, h), _ in rows:
            write_image(images / p, w, h)
    return images, meta


# ---- wsolevaluation metadata with masks (OpenImages) -----------------------------------
def openimages_masks() -> dict[str, np.ndarray]:
    """Two instance masks and an ignore mask of a 20x16 (w x h) image, and the expected
    combined 0/1/255 mask. PNG values: 255 foreground, 0 background; one instance uses 1
    (nonzero counts as foreground, as > 0.5 does in wsolevaluation)."""
    h, w = 16, 20
    inst1 = np.zeros((h, w), np.uint8)
    inst1[2:6, 3:9] = 255  # rows 2..5, cols 3..8 -> box [3, 2, 9, 6]
    inst2 = np.zeros((h, w), np.uint8)
    inst2[8:12, 10:18] = 1  # rows 8..11, cols 10..17 -> box [10, 8, 18, 12]
    inst2[4:6, 8:10] = 1  # overlaps instance 1 at (4..5, 8)
    ignore = np.zeros((h, w), np.uint8)
    ignore[0:14, 0:12] = 255
    expected = np.zeros((h, w), np.uint8)
    ignore_region = (ignore > 0) & ~((inst1 > 0) | (inst2 > 0))
    expected[ignore_region] = 255
    expected[(inst1 > 0) | (inst2 > 0)] = 1
    return {"inst1": inst1, "inst2": inst2, "ignore": ignore, "expected": expected}


def write_openimages(base: Path) -> tuple[Path, Path, dict]:
    """OpenImages layout: base/OpenImages/{train,val,test}/<class>/..., metadata under
    base/metadata. The first test image has two instances and an ignore mask; the second
    one instance and no ignore mask (an empty third field)."""
    root, meta = base / "OpenImages", base / "metadata"
    m = openimages_masks()
    splits = {
        "train": [
            ("train/c0/t0.jpg", 0, (20, 16)),
            ("train/c1/t1.jpg", 1, (24, 18)),
            ("train/c2/t2.jpg", 2, (16, 20)),
        ],
        "val": [
            ("val/c0/v0.jpg", 0, (20, 16)),
            ("val/c1/v1.jpg", 1, (20, 16)),
            ("val/c2/v2.jpg", 2, (20, 16)),
        ],
        "test": [("test/c0/x0.jpg", 0, (20, 16)), ("test/c2/x1.jpg", 2, (20, 16))],
    }
    for split, rows in splits.items():
        d = meta / split
        write_text(d / "image_ids.txt", [p for p, *_ in rows])
        write_text(d / "class_labels.txt", [f"{p},{c}" for p, c, _ in rows])
        for p, _, (w, h) in rows:
            write_image(root / p, w, h)
    # val: one instance each, with ignore masks
    loc = []
    for p, _, _ in splits["val"]:
        stem = p[:-4]
        write_mask(root / f"{stem}_m1.png", m["inst1"])
        write_mask(root / f"{stem}_ignore.png", m["ignore"])
        loc.append(f"{p},{stem}_m1.png,{stem}_ignore.png")
    write_text(meta / "val" / "localization.txt", loc)
    # test
    write_mask(root / "test/c0/x0_m1.png", m["inst1"])
    write_mask(root / "test/c0/x0_m2.png", m["inst2"])
    write_mask(root / "test/c0/x0_ignore.png", m["ignore"])
    write_mask(root / "test/c2/x1_m1.png", m["inst2"])
    write_text(
        meta / "test" / "localization.txt",
        [
            "test/c0/x0.jpg,test/c0/x0_m1.png,test/c0/x0_ignore.png",
            "test/c0/x0.jpg,test/c0/x0_m2.png,",
            "test/c2/x1.jpg,test/c2/x1_m1.png,",
        ],
    )
    return root, meta, m


# ---- ILSVRC 2012 release -------------------------------------------------------------
WNIDS = ["n01000001", "n01000002", "n01000003"]
# val image stem -> (wnid, (width, height), [inclusive boxes])
IMAGENET_VAL = {
    "ILSVRC2012_val_00000001": ("n01000002", (20, 16), [(1, 2, 10, 12), (12, 3, 19, 15)]),
    "ILSVRC2012_val_00000002": ("n01000001", (24, 18), [(0, 0, 23, 17)]),
    "ILSVRC2012_val_00000003": ("n01000003", (16, 20), [(4, 4, 9, 16)]),
}


def voc_xml(stem: str, wnid: str, size: tuple[int, int], boxes) -> str:
    w, h = size
    objs = "".join(
        f"\t<object>\n\t\t<name>{wnid}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n"
        f"\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation>\n\t<folder>val</folder>\n\t<filename>{stem}</filename>\n\t<source>\n\t\t<database>ILSVRC_2012</database>\n"
        f"\t</source>\n\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>0</segmented>\n{objs}</annotation>\n"
    )


def write_imagenet(base: Path, val=IMAGENET_VAL, mapping: bool = False) -> tuple[Path, Path, Path]:
    """base/ILSVRC/{train,val}, XML files in base/val_xml, the CSV in base/LOC_val_solution.csv."""
    root = base / "ILSVRC"
    for i, wnid in enumerate(WNIDS):
        for j in range(2):
            write_image(root / "train" / wnid / f"{wnid}_{j + 1}.JPEG", 20 + 2 * i, 16)
    xml_dir = base / "val_xml"
    xml_dir.mkdir(parents=True, exist_ok=True)
    rows = ["ImageId,PredictionString"]
    for stem, (wnid, (w, h), boxes) in val.items():
        write_image(root / "val" / f"{stem}.JPEG", w, h)
        (xml_dir / f"{stem}.xml").write_text(voc_xml(stem, wnid, (w, h), boxes))
        rows.append(
            f"{stem}," + " ".join(f"{wnid} {x0} {y0} {x1} {y1}" for x0, y0, x1, y1 in boxes) + " "
        )
    write_text(base / "LOC_val_solution.csv", rows)
    if mapping:
        write_text(root / "LOC_synset_mapping.txt", [f"{w} class {w}" for w in WNIDS])
    return root, xml_dir, base / "LOC_val_solution.csv"
