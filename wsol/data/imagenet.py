"""`data=imagenet`: ILSVRC 2012 (ImageNet) in its release layout.

``root`` holds ``train/<wnid>/*.JPEG`` and ``val/*.JPEG`` (or ``val/<wnid>/*.JPEG``, the
layout of PyTorch's ImageNet example). Classes are the wnids in the standard order: the
lines of ``LOC_synset_mapping.txt`` (``<wnid> <description>``; ``synset_mapping``, by
default ``root/LOC_synset_mapping.txt`` when it exists), else the sorted folder names of
``train/``.

Splits (the release's names): ``train`` (labels from the folders; no boxes: the record
holds the whole image as a placeholder box, never scored) and ``val`` (the 50,000
validation images every WSOL paper reports on; the data module uses it as its test
split). Validation labels and boxes come from ``val_annotations``: either

- a folder of the devkit's PASCAL VOC XML files, ``ILSVRC2012_val_00000001.xml`` ...:
  ``<size><width>, <height>`` and ``<object><name>wnid</name><bndbox><xmin> <ymin>
  <xmax> <ymax>``; or
- the file ``LOC_val_solution.csv``: ``ImageId,PredictionString`` with repeated
  ``wnid x0 y0 x1 y1`` groups (by default ``root/LOC_val_solution.csv`` when it exists).

Both give inclusive pixel indices; the suite box is ``[x0, y0, x1 + 1, y1 + 1]``. An
image's label is the wnid of its boxes (in ILSVRC val all boxes of an image share one
wnid; the reader refuses an image whose boxes disagree).
"""

from __future__ import annotations

import os
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wsol.data.common import (
    IMAGE_SUFFIXES,
    AnnotatedImages,
    check_box,
    check_image_size,
    clip_boxes,
    header_size,
    inside,
    read_lines,
    report_clipped,
    require_dir,
    to_int,
    whole_image_box,
)
from wsol.errors import WSOLError, where

SPLITS = ("train", "val")
ROOT_HINT = "the ILSVRC 2012 folder holding train/ and val/"


# ---- a small XML reader that keeps line numbers ---------------------------------------
@dataclass
class _Node:
    tag: str
    line: int
    text: str = ""
    children: list[_Node] = field(default_factory=list)

    def all(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]

    def one(self, tag: str, path: Path) -> _Node:
        found = self.all(tag)
        if len(found) != 1:
            how = "no" if not found else f"{len(found)}"
            raise WSOLError(
                f"{where(path, self.line)}: <{self.tag}> has {how} <{tag}> element(s), expected one"
            )
        return found[0]


def _parse_xml(path: Path) -> _Node:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WSOLError(f"cannot read {path}: {e.strerror or e}") from None
    parser = xml.parsers.expat.ParserCreate()
    stack: list[_Node] = []
    root: list[_Node] = []

    def start(tag, _attrs):
        node = _Node(tag, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(_tag):
        node = stack.pop()
        node.text = node.text.strip()

    def chars(text):
        if stack:
            stack[-1].text += text

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as e:
        raise WSOLError(
            f"{where(path, e.lineno)}: malformed XML: {xml.parsers.expat.ErrorString(e.code)}"
        ) from None
    return root[0]


def _xml_int(node: _Node, path: Path) -> int:
    return to_int(path, node.line, node.text, f"<{node.tag}>")


@dataclass
class _ValImage:
    wnid: str
    boxes: np.ndarray  # suite boxes (N, 4)
    sources: list[str]
    values: list[str]
    size: tuple[int, int] | None  # (height, width) from the XML, None from the CSV
    source: str  # the file (and line) that annotates the image


def read_val_xml(folder: Path) -> dict[str, _ValImage]:
    """Parse a folder of ILSVRC val XML files (one per image, named after it)."""
    out: dict[str, _ValImage] = {}
    files = sorted(
        e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(".xml")
    )
    if not files:
        raise WSOLError(
            f"data.dataset.val_annotations={folder} holds no .xml file; set it to the devkit's val annotation folder"
        )
    for name in files:
        path = folder / name
        doc = _parse_xml(path)
        size_node = doc.one("size", path)
        wn, hn = size_node.one("width", path), size_node.one("height", path)
        w, h = _xml_int(wn, path), _xml_int(hn, path)
        if w <= 0 or h <= 0:
            raise WSOLError(
                f"{where(path, size_node.line)}: image size must be positive: width {wn.text!r}, height {hn.text!r}"
            )
        objects = doc.all("object")
        if not objects:
            raise WSOLError(f"{path}: no <object> (every val image has at least one box)")
        wnid = None
        boxes, sources, values = [], [], []
        for obj in objects:
            name_node = obj.one("name", path)
            if wnid is None:
                wnid = name_node.text
            elif name_node.text != wnid:
                raise WSOLError(
                    f"{where(path, name_node.line)}: object of class {name_node.text!r} in an image whose first object is {wnid!r}; "
                    "ILSVRC val images have one class"
                )
            bb = obj.one("bndbox", path)
            x0, y0, x1, y1 = (
                _xml_int(bb.one(t, path), path) for t in ("xmin", "ymin", "xmax", "ymax")
            )
            value = f"xmin={x0} ymin={y0} xmax={x1} ymax={y1}"
            src = where(path, bb.line)
            boxes.append(check_box([x0, y0, x1 + 1, y1 + 1], src, value))
            sources.append(src)
            values.append(value)
        out[Path(name).stem] = _ValImage(wnid, np.stack(boxes), sources, values, (h, w), str(path))
    return out


def read_val_csv(path: Path) -> dict[str, _ValImage]:
    """Parse ``LOC_val_solution.csv`` (``ImageId,PredictionString``)."""
    lines = read_lines(path)
    if not lines:
        raise WSOLError(f"{path} is empty")
    n0, header = lines[0]
    if [h.strip() for h in header.split(",")] != ["ImageId", "PredictionString"]:
        raise WSOLError(
            f"{where(path, n0)}: expected the header 'ImageId,PredictionString', got {header!r}"
        )
    out: dict[str, _ValImage] = {}
    first: dict[str, int] = {}
    for n, line in lines[1:]:
        parts = line.split(",")
        if len(parts) != 2:
            few = "too few" if len(parts) < 2 else "too many"
            raise WSOLError(
                f"{where(path, n)}: {few} fields (expected 2: ImageId,PredictionString): {line!r}"
            )
        image_id, pred = parts[0].strip(), parts[1].split()
        if not image_id:
            raise WSOLError(f"{where(path, n)}: empty ImageId: {line!r}")
        if image_id in first:
            raise WSOLError(
                f"{where(path, n)}: duplicate ImageId {image_id!r} (first at line {first[image_id]})"
            )
        if not pred or len(pred) % 5:
            raise WSOLError(
                f"{where(path, n)}: PredictionString must be groups of 5 values 'wnid x0 y0 x1 y1', got {len(pred)} value(s): {parts[1]!r}"
            )
        src = where(path, n)
        wnid = pred[0]
        boxes, values = [], []
        for g in range(0, len(pred), 5):
            name, *coords = pred[g : g + 5]
            if name != wnid:
                raise WSOLError(
                    f"{src}: box of class {name!r} in an image whose first box is {wnid!r}; ILSVRC val images have one class"
                )
            x0, y0, x1, y1 = (
                to_int(path, n, v, k) for v, k in zip(coords, ("x0", "y0", "x1", "y1"))
            )
            value = " ".join(pred[g : g + 5])
            boxes.append(check_box([x0, y0, x1 + 1, y1 + 1], src, value))
            values.append(value)
        first[image_id] = n
        out[image_id] = _ValImage(wnid, np.stack(boxes), [src] * len(boxes), values, None, src)
    if not out:
        raise WSOLError(f"{path} has a header but no image")
    return out


def read_synset_mapping(path: Path) -> list[str]:
    wnids: list[str] = []
    first: dict[str, int] = {}
    for n, line in read_lines(path):
        wnid = line.split(maxsplit=1)[0]
        if wnid in first:
            raise WSOLError(
                f"{where(path, n)}: duplicate wnid {wnid!r} (first at line {first[wnid]})"
            )
        first[wnid] = n
        wnids.append(wnid)
    if not wnids:
        raise WSOLError(f"{path} is empty")
    return wnids


def _image_files(folder: Path) -> list[str]:
    """Names of the image files in ``folder``, sorted; any other file is refused."""
    names = []
    for e in os.scandir(folder):
        if e.is_dir():
            raise WSOLError(
                f"{folder / e.name} is a folder inside a class folder; expected only images"
            )
        if os.path.splitext(e.name)[1].lower() not in IMAGE_SUFFIXES:
            raise WSOLError(
                f"{folder / e.name} is not an image file (suffix not one of {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        names.append(e.name)
    return sorted(names)


class ImageNetDataset(AnnotatedImages):
    """ILSVRC 2012 train or val in the release layout (see the module docstring).

    Args:
        split: ``train`` or ``val``.
        root: the folder holding ``train/`` and ``val/``.
        val_annotations: the devkit's val XML folder or ``LOC_val_solution.csv``
            (default: ``root/LOC_val_solution.csv`` when it exists).
        synset_mapping: ``LOC_synset_mapping.txt`` (default: ``root/LOC_synset_mapping.txt``
            when it exists, else the sorted folders of ``train/``).
        load_images: False: records carry no image (annotations only; the transform is
            not applied; sizes missing from the annotations are read from image headers).
        transform: callable(record) -> record applied last.
    """

    def __init__(
        self,
        split: str = "train",
        root: str | None = None,
        val_annotations: str | None = None,
        synset_mapping: str | None = None,
        load_images: bool = True,
        transform=None,
    ):
        if split not in SPLITS:
            hint = (
                " (the ILSVRC 2012 validation images are the split 'val'; data=imagenet uses them as its test split)"
                if split == "test"
                else ""
            )
            raise WSOLError(
                f"unknown split {split!r} for data=imagenet; valid: {', '.join(SPLITS)}{hint}"
            )
        self.split = split
        self.transform = transform
        self.load_images = bool(load_images)
        self.root = require_dir(root, "data.dataset.root", ROOT_HINT)
        self.clipped: list[str] = []

        # classes
        train_dir = self.root / "train"
        if synset_mapping is None and (self.root / "LOC_synset_mapping.txt").is_file():
            synset_mapping = str(self.root / "LOC_synset_mapping.txt")
        train_wnids = (
            sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
            if train_dir.is_dir()
            else None
        )
        if synset_mapping is not None:
            mapping = Path(os.path.expanduser(str(synset_mapping)))
            if not mapping.is_file():
                raise WSOLError(
                    f"data.dataset.synset_mapping={mapping} does not exist; set it to LOC_synset_mapping.txt or null"
                )
            self.wnids = read_synset_mapping(mapping)
            self._classes_source = str(mapping)
        elif train_wnids:
            self.wnids = train_wnids
            self._classes_source = str(train_dir)
        else:
            raise WSOLError(
                f"no class list: {train_dir} has no class folders and there is no LOC_synset_mapping.txt; "
                "set data.dataset.synset_mapping to LOC_synset_mapping.txt"
            )
        self.class_index = {w: i for i, w in enumerate(self.wnids)}
        self.num_classes = len(self.wnids)

        if split == "train":
            self._init_train(train_dir)
        else:
            self._init_val(val_annotations)
        if not self._ids:
            raise WSOLError(f"the {split} split of data=imagenet under {self.root} is empty")

    # ---- split listings -------------------------------------------------------------
    def _init_train(self, train_dir: Path) -> None:
        if not train_dir.is_dir():
            raise WSOLError(f"{train_dir} does not exist; set data.dataset.root to {ROOT_HINT}")
        self.box_source = "placeholder"
        ids, labels = [], []
        for e in sorted(os.scandir(train_dir), key=lambda e: e.name):
            if not e.is_dir():
                raise WSOLError(
                    f"{train_dir / e.name} is not a class folder; {train_dir} must hold only <wnid>/ folders"
                )
            if e.name not in self.class_index:
                raise WSOLError(
                    f"{train_dir / e.name}: class folder {e.name!r} is not in {self._classes_source}"
                )
            for name in _image_files(train_dir / e.name):
                ids.append(f"train/{e.name}/{name}")
                labels.append(self.class_index[e.name])
        self._ids = ids
        self._labels = np.asarray(labels, dtype=np.int64)
        self._val: list[_ValImage] | None = None

    def _init_val(self, val_annotations: str | None) -> None:
        self.box_source = "boxes"
        if val_annotations is None:
            default = self.root / "LOC_val_solution.csv"
            if not default.is_file():
                raise WSOLError(
                    "data.dataset.val_annotations is not set; set it to the devkit's val XML folder "
                    "(ILSVRC2012_val_00000001.xml ...) or to LOC_val_solution.csv"
                )
            val_annotations = str(default)
        ann_path = Path(os.path.expanduser(str(val_annotations)))
        if ann_path.is_dir():
            annotations = read_val_xml(ann_path)
        elif ann_path.is_file():
            annotations = read_val_csv(ann_path)
        else:
            raise WSOLError(
                f"data.dataset.val_annotations={ann_path} does not exist; set it to the val XML folder or LOC_val_solution.csv"
            )
        val_dir = self.root / "val"
        if not val_dir.is_dir():
            raise WSOLError(f"{val_dir} does not exist; set data.dataset.root to {ROOT_HINT}")
        # the images: val/*.JPEG, or val/<wnid>/*.JPEG
        found: dict[str, str] = {}
        folder_of: dict[str, str] = {}
        for e in sorted(os.scandir(val_dir), key=lambda e: e.name):
            names = (
                [(e.name, None)]
                if not e.is_dir()
                else [(n, e.name) for n in _image_files(val_dir / e.name)]
            )
            for name, folder in names:
                if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                    raise WSOLError(
                        f"{val_dir / name} is not an image file (suffix not one of {', '.join(sorted(IMAGE_SUFFIXES))})"
                    )
                stem = os.path.splitext(name)[0]
                rel = f"val/{folder}/{name}" if folder else f"val/{name}"
                if stem in found:
                    raise WSOLError(
                        f"{self.root / rel}: a second image named {stem!r} (first: {self.root / found[stem]})"
                    )
                found[stem] = rel
                if folder:
                    folder_of[stem] = folder
        for stem, rel in found.items():
            if stem not in annotations:
                raise WSOLError(f"image {self.root / rel} has no annotation in {ann_path}")
        ids, labels, val = [], [], []
        for stem in sorted(annotations):
            a = annotations[stem]
            if stem not in found:
                raise WSOLError(f"{a.source}: annotates {stem!r} but {val_dir} has no such image")
            if a.wnid not in self.class_index:
                raise WSOLError(f"{a.source}: class {a.wnid!r} is not in {self._classes_source}")
            if stem in folder_of and folder_of[stem] != a.wnid:
                raise WSOLError(
                    f"{self.root / found[stem]} lies in the folder {folder_of[stem]!r} but {a.source} says class {a.wnid!r}"
                )
            if a.size is not None:
                a.boxes, clipped = clip_boxes(a.boxes, a.size, a.sources, a.values)
                self.clipped += clipped
            ids.append(found[stem])
            labels.append(self.class_index[a.wnid])
            val.append(a)
        report_clipped(self.clipped, str(ann_path))
        self._ids = ids
        self._labels = np.asarray(labels, dtype=np.int64)
        self._val = val

    # ---- what the data module and the protocols use --------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.wnids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def __len__(self) -> int:
        return len(self._ids)

    def image_source(self, index: int) -> str:
        if self._val is not None:
            return self._val[index].source
        return self._classes_source

    def image_path(self, index: int) -> Path:
        return inside(
            self.root / self.split, self._ids[index].split("/", 1)[1], self.image_source(index)
        )

    def _record(self, index: int, image: torch.Tensor | None) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        a = self._val[index] if self._val is not None else None
        expected = a.size if a is not None else None
        if image is not None:
            size = check_image_size(
                self.image_path(index), image, expected, a.source if a is not None else ""
            )
        else:
            size = (
                expected
                if expected is not None
                else header_size(self.image_path(index), self.image_source(index))
            )
        if a is None:
            boxes = whole_image_box(size)
        elif a.size is None:  # CSV: sizes known only now
            boxes, clipped = clip_boxes(a.boxes, size, a.sources, a.values)
            if clipped:
                self.clipped += clipped
                report_clipped(clipped, a.source)
        else:
            boxes = a.boxes
        record = {
            "label": int(self._labels[index]),
            "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float64)),
            "size": (int(size[0]), int(size[1])),
            "mask": None,
            "id": self._ids[index],
            "index": index,
        }
        if image is not None:
            record = {"image": image, **record}
        return record
