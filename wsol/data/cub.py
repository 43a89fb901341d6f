"""`data=cub`: CUB-200-2011 (Wah et al., 2011) as distributed.

``root`` is the ``CUB_200_2011`` folder:

- ``images.txt``: ``<image_id> <relative path>`` (paths relative to ``images/``);
- ``classes.txt``: ``<class_id> <name>``, class ids 1..200 in order;
- ``image_class_labels.txt``: ``<image_id> <class_id>`` (1-based; the record's label is
  ``class_id - 1``);
- ``train_test_split.txt``: ``<image_id> <1|0>`` (1: train, 0: test);
- ``bounding_boxes.txt``: ``<image_id> <x> <y> <width> <height>`` (floats, pixel edges),
  one box per image; the suite box is ``[x, y, x + width, y + height]``;
- ``images/<class>/<file>.jpg``.

The record's ``id`` is the image's path relative to ``images/`` (the same ids as
wsolevaluation's CUB metadata); its ``size`` comes from the image itself (its header
when no image is decoded, see `annotation`).

Splits: ``train`` and ``test`` from ``train_test_split.txt``. CUB-200-2011 has no
validation split: ``val`` exists only with ``val_per_class > 0``, as a seeded hold-out
of that many training images per class, which ``train`` then leaves out. For
wsolevaluation's fully annotated val split (CUBV2) use ``data=cub_wsol``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wsol.data.common import (
    AnnotatedImages,
    check_box,
    check_image_size,
    check_relpath,
    clip_boxes,
    fields,
    header_size,
    inside,
    read_lines,
    report_clipped,
    require_dir,
    require_file,
    seeded_per_class,
    strip_number,
    to_float,
    to_int,
)
from wsol.errors import WSOLError, where

SPLITS = ("train", "val", "test")
ROOT_HINT = "the CUB_200_2011 folder (with images.txt and images/)"


def _per_image(path: Path, ids: dict[int, int], ncols: int, form: str, sep: str | None = None):
    """Yield ``(line_no, line, k, values)`` for a ``<image_id> ...`` file: each id once, and
    every id of images.txt present."""
    seen: dict[int, int] = {}
    for n, line in read_lines(path):
        parts = fields(path, n, line, sep, ncols, form)
        image_id = to_int(path, n, parts[0], "image id")
        k = ids.get(image_id)
        if k is None:
            raise WSOLError(f"{where(path, n)}: image id {image_id} is not in images.txt: {line!r}")
        if image_id in seen:
            raise WSOLError(
                f"{where(path, n)}: duplicate image id {image_id} (first at line {seen[image_id]})"
            )
        seen[image_id] = n
        yield n, line, k, parts[1:]
    if len(seen) != len(ids):
        missing = next(i for i in ids if i not in seen)
        raise WSOLError(f"{path} has no line for image id {missing} of images.txt")


class CUBDataset(AnnotatedImages):
    """A split of CUB-200-2011 in its release layout (see the module docstring).

    Args:
        split: ``train``, ``test``, or ``val`` (only with ``val_per_class > 0``).
        root: the ``CUB_200_2011`` folder.
        val_per_class: >0: hold out this many training images per class (drawn with
            ``val_seed``) as the ``val`` split; ``train`` leaves them out.
        val_seed: the seed of that draw.
        load_images: False: records carry no image (annotations only; the transform is
            not applied; sizes are read from the image headers).
        transform: callable(record) -> record applied last.
    """

    def __init__(
        self,
        split: str = "train",
        root: str | None = None,
        val_per_class: int = 0,
        val_seed: int = 0,
        load_images: bool = True,
        transform=None,
    ):
        if split not in SPLITS:
            raise WSOLError(f"unknown split {split!r} for data=cub; valid: {', '.join(SPLITS)}")
        if int(val_per_class) < 0:
            raise WSOLError(f"data.dataset.val_per_class must be >= 0, got {val_per_class}")
        if split == "val" and int(val_per_class) == 0:
            raise WSOLError(
                "data=cub has no val split (CUB-200-2011 has only train and test): set "
                "data.dataset.val_per_class=N to hold out N training images per class, or "
                "data.val_split=null, or use data=cub_wsol for wsolevaluation's CUBV2 val split"
            )
        self.split = split
        self.transform = transform
        self.load_images = bool(load_images)
        self.root = require_dir(root, "data.dataset.root", ROOT_HINT)
        self.image_root = self.root / "images"
        for name in (
            "images.txt",
            "classes.txt",
            "image_class_labels.txt",
            "train_test_split.txt",
            "bounding_boxes.txt",
        ):
            require_file(self.root / name, f"data.dataset.root={self.root} must be {ROOT_HINT}")
        if not self.image_root.is_dir() and self.load_images:
            raise WSOLError(
                f"{self.image_root} does not exist; set data.dataset.root to {ROOT_HINT}"
            )

        # classes.txt: ids 1..C in order
        classes_file = self.root / "classes.txt"
        self._class_names: list[str] = []
        for n, line in read_lines(classes_file):
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise WSOLError(
                    f"{where(classes_file, n)}: too few fields (expected 2: <class_id> <name>): {line!r}"
                )
            cid = to_int(classes_file, n, parts[0], "class id")
            if cid != len(self._class_names) + 1:
                raise WSOLError(
                    f"{where(classes_file, n)}: class id {parts[0]!r} out of order (expected {len(self._class_names) + 1})"
                )
            self._class_names.append(strip_number(parts[1].strip()))
        if not self._class_names:
            raise WSOLError(f"{classes_file} is empty")
        self.num_classes = len(self._class_names)

        # images.txt: the master list
        images_file = self.root / "images.txt"
        self._images_file = images_file
        index: dict[int, int] = {}
        paths: list[str] = []
        path_lines: list[int] = []
        first_path: dict[str, int] = {}
        for n, line in read_lines(images_file):
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise WSOLError(
                    f"{where(images_file, n)}: too few fields (expected 2: <image_id> <path>): {line!r}"
                )
            image_id = to_int(images_file, n, parts[0], "image id")
            rel = check_relpath(parts[1].strip(), images_file, n, "image path")
            if image_id in index:
                raise WSOLError(
                    f"{where(images_file, n)}: duplicate image id {image_id} (first at line {path_lines[index[image_id]]})"
                )
            if rel in first_path:
                raise WSOLError(
                    f"{where(images_file, n)}: duplicate image path {rel!r} (first at line {first_path[rel]})"
                )
            index[image_id] = len(paths)
            first_path[rel] = n
            paths.append(rel)
            path_lines.append(n)
        if not paths:
            raise WSOLError(f"{images_file} is empty")
        count = len(paths)

        # image_class_labels.txt (1-based)
        labels_file = self.root / "image_class_labels.txt"
        labels = np.zeros(count, dtype=np.int64)
        for n, _line, k, (value,) in _per_image(labels_file, index, 2, "<image_id> <class_id>"):
            cid = to_int(labels_file, n, value, "class id")
            if not 1 <= cid <= self.num_classes:
                raise WSOLError(
                    f"{where(labels_file, n)}: class id {value!r} is out of range 1..{self.num_classes} (classes.txt)"
                )
            labels[k] = cid - 1

        # train_test_split.txt
        split_file = self.root / "train_test_split.txt"
        is_train = np.zeros(count, dtype=bool)
        for n, _line, k, (value,) in _per_image(
            split_file, index, 2, "<image_id> <is_training_image>"
        ):
            if value not in ("0", "1"):
                raise WSOLError(
                    f"{where(split_file, n)}: is_training_image must be 1 or 0, got {value!r}"
                )
            is_train[k] = value == "1"

        # bounding_boxes.txt: x y width height -> [x, y, x + width, y + height]
        boxes_file = self.root / "bounding_boxes.txt"
        self._boxes_file = boxes_file
        boxes = np.zeros((count, 4), dtype=np.float64)
        box_lines = np.zeros(count, dtype=np.int64)
        box_text: list[str] = [""] * count
        for n, line, k, values in _per_image(
            boxes_file, index, 5, "<image_id> <x> <y> <width> <height>"
        ):
            x, y, w, h = (
                to_float(boxes_file, n, v, name)
                for v, name in zip(values, ("x", "y", "width", "height"))
            )
            boxes[k] = check_box([x, y, x + w, y + h], where(boxes_file, n), line)
            box_lines[k] = n
            box_text[k] = line

        # the split
        train_idx = np.flatnonzero(is_train)
        held_out = np.zeros(0, dtype=np.int64)
        if int(val_per_class) > 0:
            held_out = train_idx[
                seeded_per_class(
                    labels[train_idx],
                    int(val_per_class),
                    int(val_seed),
                    str(split_file),
                    "data.dataset.val_per_class",
                )
            ]
        if split == "train":
            order = np.setdiff1d(train_idx, held_out)
        elif split == "val":
            order = held_out
        else:
            order = np.flatnonzero(~is_train)
        if order.size == 0:
            raise WSOLError(f"{split_file}: the {split} split of data=cub is empty")
        self._order = order
        self._paths = [paths[k] for k in order]
        self._path_lines = [path_lines[k] for k in order]
        self._labels = labels[order]
        self._boxes = boxes[order]
        self._box_lines = box_lines[order]
        self._box_text = [box_text[k] for k in order]
        self._sizes: dict[int, tuple[int, int]] = {}
        self.clipped: list[str] = []
        self.box_source = "boxes"

    # ---- what the data module and the protocols use --------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def ids(self) -> list[str]:
        return list(self._paths)

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def __len__(self) -> int:
        return len(self._paths)

    def image_source(self, index: int) -> str:
        return where(self._images_file, self._path_lines[index])

    def image_path(self, index: int) -> Path:
        return inside(self.image_root, self._paths[index], self.image_source(index))

    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) of image ``index`` from its file header (cached)."""
        if index not in self._sizes:
            self._sizes[index] = header_size(self.image_path(index), self.image_source(index))
        return self._sizes[index]

    def _record(self, index: int, image: torch.Tensor | None) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if image is not None:
            size = check_image_size(self.image_path(index), image, None, "")
            self._sizes[index] = size
        else:
            size = self.image_size(index)
        src = where(self._boxes_file, int(self._box_lines[index]))
        boxes, clipped = clip_boxes(
            self._boxes[index : index + 1], size, [src], [self._box_text[index]]
        )
        if clipped:
            self.clipped += clipped
            report_clipped(clipped, str(self._boxes_file))
        record = {
            "label": int(self._labels[index]),
            "boxes": torch.from_numpy(boxes),
            "size": size,
            "mask": None,
            "id": self._paths[index],
            "index": index,
        }
        if image is not None:
            record = {"image": image, **record}
        return record
