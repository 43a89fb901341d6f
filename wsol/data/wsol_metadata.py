"""`data=cub_wsol`, `data=imagenet_wsol`, `data=openimages_wsol`: the metadata format of
wsolevaluation (Choe et al., "Evaluating Weakly Supervised Object Localization Methods
Right", CVPR 2020).

``metadata_root`` holds ``train/``, ``val/`` and ``test/``, each with

- ``image_ids.txt``: one image path per line, relative to ``root`` (the record's ``id``);
- ``class_labels.txt``: ``path,label`` (0-based);
- ``image_sizes.txt``: ``path,width,height`` (optional; OpenImages30k's release ships
  it empty, which reads as absent: the size then comes from the image, or from the
  masks where no image is read);
- ``localization.txt``: boxes ``path,x0,y0,x1,y1`` (one line per box, integer pixels,
  scored by wsolevaluation as inclusive boxes, so the suite box is
  ``[x0, y0, x1 + 1, y1 + 1]``), or for OpenImages masks ``path,mask_png,ignore_png``
  (one line per instance mask; the ignore mask only on the image's first line), the PNG
  paths relative to ``mask_root``. ``train/`` may lack it (wsolevaluation's ImageNet and
  OpenImages training splits carry labels only): its records then hold the whole image
  as a placeholder box, never scored.

The splits are wsolevaluation's: ``train`` (train-weaksup), ``val`` (train-fullsup: the
small fully annotated split for choosing thresholds and hyperparameters: CUBV2,
ImageNetV2, OpenImages30k val) and ``test``.

Masks (OpenImages) follow wsolevaluation's ``get_mask`` before its resize: every
instance PNG read as 8-bit grey, foreground where > 0.5 (nonzero), instances OR-ed; the
ignore PNG > 0.5 and not foreground -> 255; 0 elsewhere; at the PNGs' own resolution
(the protocol resizes it with nearest neighbour, which commutes with these pixelwise
operations). The boxes of an OpenImages record are the boxes of its instance masks
(scaled to the image when the mask's resolution differs), since the data set has no box
annotations; wsolevaluation scores OpenImages by its masks (PxAP) only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wsol.data.common import (
    AnnotatedImages,
    box_of_mask,
    check_box,
    check_image_size,
    check_label,
    check_relpath,
    clip_boxes,
    fields,
    header_size,
    inside,
    load_gray,
    log,
    read_lines,
    report_clipped,
    require_dir,
    seeded_per_class,
    strip_number,
    to_int,
    whole_image_box,
)
from wsol.errors import WSOLError, where

SPLITS = ("train", "val", "test")

# dataset_name -> (number of classes, localization kind)
DATASETS = {
    "CUB": (200, "boxes"),
    "ILSVRC": (1000, "boxes"),
    "OpenImages": (100, "masks"),
}


@dataclass
class SplitAnnotations:
    """Everything the metadata files say about one split (parsed and checked)."""

    split: str
    folder: Path
    kind: str  # "boxes" or "masks"
    ids: list[str]
    id_lines: list[int]
    labels: np.ndarray
    sizes: list[tuple[int, int]] | None = None  # (height, width), from image_sizes.txt
    size_lines: list[int] | None = None
    boxes: list[np.ndarray] | None = None  # suite boxes (N, 4), already clipped
    box_sources: list[list[str]] | None = None
    box_values: list[list[str]] | None = None
    masks: list[list[str]] | None = None  # instance mask paths (relative to mask_root)
    ignores: list[str] | None = None  # ignore mask path or "" (relative to mask_root)
    mask_sources: list[str] | None = None
    clipped: list[str] = field(default_factory=list)

    @property
    def has_localization(self) -> bool:
        return self.boxes is not None or self.masks is not None

    def file(self, name: str) -> Path:
        return self.folder / name


def read_metadata(
    metadata_root: str | Path,
    split: str,
    num_classes: int,
    kind: str = "boxes",
    setting: str = "data.dataset.metadata_root",
) -> SplitAnnotations:
    """Parse and check one split of wsolevaluation metadata (no image is opened).

    Raises `WSOLError` naming the file, line and value for a malformed line, a non-number,
    an empty box, a label out of range, a duplicate id or ids that disagree between the
    files. Boxes outside the image (when ``image_sizes.txt`` gives the size) are clipped
    and listed in ``clipped``.
    """
    if split not in SPLITS:
        raise WSOLError(
            f"unknown split {split!r} for wsolevaluation metadata; valid: {', '.join(SPLITS)}"
        )
    if kind not in ("boxes", "masks"):
        raise ValueError(kind)
    root = require_dir(
        metadata_root,
        setting,
        "the wsolevaluation metadata folder of the data set (with train/ val/ test/)",
    )
    folder = root / split
    if not folder.is_dir():
        raise WSOLError(
            f"{folder} does not exist; {setting}={root} must hold the folders train/ val/ test/"
        )

    # image_ids.txt: the master list of the split
    ids_file = folder / "image_ids.txt"
    ids: list[str] = []
    id_lines: list[int] = []
    index: dict[str, int] = {}
    for n, line in read_lines(ids_file):
        image_id = line
        if "," in image_id:
            raise WSOLError(
                f"{where(ids_file, n)}: too many fields (one image path per line): {line!r}"
            )
        check_relpath(image_id, ids_file, n, "image path")
        if image_id in index:
            raise WSOLError(
                f"{where(ids_file, n)}: duplicate image id {image_id!r} (first at line {id_lines[index[image_id]]})"
            )
        index[image_id] = len(ids)
        ids.append(image_id)
        id_lines.append(n)
    if not ids:
        raise WSOLError(f"{ids_file} is empty: the {split} split has no images")

    def lookup(path: Path, n: int, image_id: str) -> int:
        i = index.get(image_id)
        if i is None:
            raise WSOLError(f"{where(path, n)}: image id {image_id!r} is not in {ids_file}")
        return i

    def require_all(path: Path, seen: list[bool] | np.ndarray, what: str) -> None:
        for i, ok in enumerate(seen):
            if not ok:
                raise WSOLError(
                    f"{path} has no {what} for image id {ids[i]!r} ({where(ids_file, id_lines[i])})"
                )

    # class_labels.txt
    labels_file = folder / "class_labels.txt"
    labels = np.full(len(ids), -1, dtype=np.int64)
    label_line = np.zeros(len(ids), dtype=np.int64)
    for n, line in read_lines(labels_file):
        image_id, value = fields(labels_file, n, line, ",", 2, "path,label")
        i = lookup(labels_file, n, image_id)
        if labels[i] >= 0:
            raise WSOLError(
                f"{where(labels_file, n)}: duplicate image id {image_id!r} (first at line {label_line[i]})"
            )
        label = to_int(labels_file, n, value, "class label")
        labels[i] = check_label(
            labels_file, n, label, num_classes, value, "data.dataset.num_classes"
        )
        label_line[i] = n
    require_all(labels_file, labels >= 0, "class label")

    ann = SplitAnnotations(
        split=split, folder=folder, kind=kind, ids=ids, id_lines=id_lines, labels=labels
    )

    # image_sizes.txt (optional; OpenImages30k's release ships it empty: no sizes)
    sizes_file = folder / "image_sizes.txt"
    size_rows = read_lines(sizes_file) if sizes_file.exists() else []
    if size_rows:
        sizes: list[tuple[int, int] | None] = [None] * len(ids)
        size_line = [0] * len(ids)
        for n, line in size_rows:
            image_id, ws, hs = fields(sizes_file, n, line, ",", 3, "path,width,height")
            i = lookup(sizes_file, n, image_id)
            if sizes[i] is not None:
                raise WSOLError(
                    f"{where(sizes_file, n)}: duplicate image id {image_id!r} (first at line {size_line[i]})"
                )
            w, h = to_int(sizes_file, n, ws, "width"), to_int(sizes_file, n, hs, "height")
            if w <= 0 or h <= 0:
                raise WSOLError(f"{where(sizes_file, n)}: image size must be positive: {line!r}")
            sizes[i] = (h, w)
            size_line[i] = n
        require_all(sizes_file, [s is not None for s in sizes], "image size")
        ann.sizes = sizes  # type: ignore[assignment]
        ann.size_lines = size_line

    # localization.txt
    loc_file = folder / "localization.txt"
    if not loc_file.exists():
        if split != "train":
            what = "boxes" if kind == "boxes" else "instance masks"
            raise WSOLError(f"{loc_file} does not exist: the {split} split needs its {what}")
        return ann
    lines = read_lines(loc_file)
    if kind == "boxes":
        raw: list[list[tuple[np.ndarray, str, str]]] = [[] for _ in ids]
        for n, line in lines:
            parts = fields(loc_file, n, line, ",", 5, "path,x0,y0,x1,y1")
            i = lookup(loc_file, n, parts[0])
            x0, y0, x1, y1 = (
                to_int(loc_file, n, v, name) for v, name in zip(parts[1:], ("x0", "y0", "x1", "y1"))
            )
            src = where(loc_file, n)
            raw[i].append((check_box([x0, y0, x1 + 1, y1 + 1], src, line), src, line))
        require_all(loc_file, [bool(r) for r in raw], "box")
        ann.boxes, ann.box_sources, ann.box_values = [], [], []
        for i, rows in enumerate(raw):
            b = np.stack([r[0] for r in rows])
            srcs = [r[1] for r in rows]
            if ann.sizes is not None:
                b, clipped = clip_boxes(b, ann.sizes[i], srcs, [r[2] for r in rows])
                ann.clipped += clipped
            ann.boxes.append(b)
            ann.box_sources.append(srcs)
            ann.box_values.append([r[2] for r in rows])
        report_clipped(ann.clipped, str(loc_file))
    else:
        masks: list[list[str]] = [[] for _ in ids]
        ignores: list[str] = [""] * len(ids)
        first_line = [0] * len(ids)
        for n, line in lines:
            image_id, mask, ignore = fields(loc_file, n, line, ",", 3, "path,mask_png,ignore_png")
            i = lookup(loc_file, n, image_id)
            check_relpath(mask, loc_file, n, "mask path")
            if ignore:
                check_relpath(ignore, loc_file, n, "ignore mask path")
            if masks[i]:
                if ignore:
                    raise WSOLError(
                        f"{where(loc_file, n)}: a second ignore mask for image {image_id!r} "
                        f"(only its first line, {first_line[i]}, may name one): {ignore!r}"
                    )
            else:
                ignores[i] = ignore
                first_line[i] = n
            masks[i].append(mask)
        require_all(loc_file, [bool(m) for m in masks], "instance mask")
        ann.masks, ann.ignores = masks, ignores
        ann.mask_sources = [where(loc_file, n) for n in first_line]
    return ann


def class_names_from_ids(ids: list[str], labels: np.ndarray, num_classes: int) -> list[str]:
    """Class names from the images' folders (``001.Black_footed_Albatross/x.jpg``,
    ``train/n01440764/x.JPEG``, ``val/01226z/x.jpg``) when every class of the split sits
    in exactly one folder of its own; else the class numbers."""
    folders: dict[int, set[str]] = defaultdict(set)
    for image_id, label in zip(ids, labels):
        parts = image_id.split("/")
        folders[int(label)].add(parts[-2] if len(parts) >= 2 else "")
    names = [str(c) for c in range(num_classes)]
    seen: set[str] = set()
    for c, fs in folders.items():
        if len(fs) != 1:
            return [str(c) for c in range(num_classes)]
        (name,) = fs
        if not name or name in seen:
            return [str(c) for c in range(num_classes)]
        seen.add(name)
        names[c] = strip_number(name)
    return names


class WSOLMetadataDataset(AnnotatedImages):
    """A split of a data set described by wsolevaluation metadata (module docstring).

    Args:
        split: ``train``, ``val`` or ``test``.
        root: the folder image ids are relative to (e.g. ``CUB_200_2011/images``,
            ``ILSVRC``, ``OpenImages``).
        metadata_root: the folder with ``train/ val/ test/`` (e.g.
            ``wsolevaluation/metadata/CUB``).
        dataset_name: ``CUB``, ``ILSVRC`` or ``OpenImages``: the number of classes and
            whether localization.txt holds boxes or masks.
        num_classes: overrides the data set's number of classes (small test sets).
        mask_root: the folder mask paths are relative to (OpenImages); default ``root``.
        val_per_class: >0: keep only this many images per class of ``val`` (drawn with
            ``val_seed``), as wsolevaluation's ``--num_val_sample_per_class``; 0: all.
        load_images: False: records carry no image (annotations only; the transform is
            not applied); ``root`` is then needed only for sizes missing from the files.
        transform: callable(record) -> record applied last.
    """

    def __init__(
        self,
        split: str = "train",
        root: str | None = None,
        metadata_root: str | None = None,
        dataset_name: str = "CUB",
        num_classes: int | None = None,
        mask_root: str | None = None,
        val_per_class: int = 0,
        val_seed: int = 0,
        load_images: bool = True,
        transform=None,
    ):
        if dataset_name not in DATASETS:
            raise WSOLError(
                f"unknown data.dataset.dataset_name {dataset_name!r}; valid: {', '.join(DATASETS)}"
            )
        default_classes, kind = DATASETS[dataset_name]
        self.dataset_name = dataset_name
        self.num_classes = int(num_classes) if num_classes is not None else default_classes
        if self.num_classes < 1:
            raise WSOLError(f"data.dataset.num_classes must be at least 1, got {num_classes}")
        self.split = split
        self.transform = transform
        self.load_images = bool(load_images)
        if self.load_images or root is not None:
            self.root = require_dir(
                root, "data.dataset.root", "the folder the image ids are relative to"
            )
        else:
            self.root = None
        ann = read_metadata(metadata_root, split, self.num_classes, kind)
        self.mask_root = None
        if kind == "masks" and ann.masks is not None:
            if mask_root is None and self.root is None:
                raise WSOLError(
                    "data.dataset.mask_root is not set; set it to the folder the mask paths are relative to"
                )
            self.mask_root = require_dir(
                mask_root if mask_root is not None else self.root,
                "data.dataset.mask_root",
                "the folder the mask paths of localization.txt are relative to",
            )
        if ann.sizes is None and self.root is None and ann.masks is None:
            raise WSOLError(
                f"{ann.file('image_sizes.txt')} is missing or empty, so image sizes come from the images: "
                "set data.dataset.root to the image folder"
            )
        self.ann = ann
        self.order = np.arange(len(ann.ids))
        if split == "val" and int(val_per_class) > 0:
            self.order = seeded_per_class(
                ann.labels,
                int(val_per_class),
                int(val_seed),
                str(ann.file("class_labels.txt")),
                "data.dataset.val_per_class",
            )
        self.clipped: list[str] = list(ann.clipped)
        self._class_names: list[str] | None = None
        self.box_source = (
            "boxes"
            if ann.boxes is not None
            else ("masks" if ann.masks is not None else "placeholder")
        )

    # ---- what the data module and the protocols use --------------------------------
    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._class_names = class_names_from_ids(
                self.ann.ids, self.ann.labels, self.num_classes
            )
        return list(self._class_names)

    @property
    def ids(self) -> list[str]:
        return [self.ann.ids[i] for i in self.order]

    @property
    def labels(self) -> np.ndarray:
        return self.ann.labels[self.order]

    def __len__(self) -> int:
        return len(self.order)

    def _source(self, k: int) -> str:
        return where(self.ann.file("image_ids.txt"), self.ann.id_lines[k])

    def image_source(self, index: int) -> str:
        return self._source(int(self.order[index]))

    def image_path(self, index: int) -> Path:
        k = int(self.order[index])
        if self.root is None:
            raise WSOLError(
                "data.dataset.root is not set; set it to the folder the image ids are relative to"
            )
        return inside(self.root, self.ann.ids[k], self._source(k))

    def _size(self, k: int, index: int) -> tuple[int, int]:
        if self.ann.sizes is not None:
            return self.ann.sizes[k]
        if self.root is None and self.ann.masks is not None:  # no image read: the mask's size
            src = self.ann.mask_sources[k]
            return header_size(inside(self.mask_root, self.ann.masks[k][0], src), src)
        return header_size(self.image_path(index), self._source(k))

    def _mask(self, k: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """(the 0/1/255 mask, the instance masks as booleans)."""
        ann = self.ann
        src = ann.mask_sources[k]
        loaded = []
        for rel in ann.masks[k]:
            p = inside(self.mask_root, rel, src)
            loaded.append((p, load_gray(p, src)))
        shape = loaded[0][1].shape
        for p, m in loaded:
            if m.shape != shape:
                raise WSOLError(
                    f"mask file {p} is {m.shape[1]}x{m.shape[0]} but {loaded[0][0]} is {shape[1]}x{shape[0]} ({src})"
                )
        fg = np.zeros(shape, dtype=bool)
        for _, m in loaded:
            fg |= m > 0
        out = fg.astype(np.uint8)
        if ann.ignores[k]:
            p = inside(self.mask_root, ann.ignores[k], src)
            ig = load_gray(p, src)
            if ig.shape != shape:
                raise WSOLError(
                    f"ignore mask {p} is {ig.shape[1]}x{ig.shape[0]} but the instance masks are {shape[1]}x{shape[0]} ({src})"
                )
            out[(ig > 0) & ~fg] = 255
        return out, [m > 0 for _, m in loaded]

    def _record(self, index: int, image: torch.Tensor | None) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = int(self.order[index])
        ann = self.ann
        if image is not None:
            expected = ann.sizes[k] if ann.sizes is not None else None
            src = (
                where(ann.file("image_sizes.txt"), ann.size_lines[k])
                if ann.size_lines is not None
                else ""
            )
            size = check_image_size(self.image_path(index), image, expected, src)
        else:
            size = self._size(k, index)
        mask = None
        if ann.boxes is not None:
            boxes = ann.boxes[k]
            if ann.sizes is None:  # sizes only known now: clip now
                boxes, clipped = clip_boxes(boxes, size, ann.box_sources[k], ann.box_values[k])
                if clipped:
                    self.clipped += clipped
                    report_clipped(clipped, self.ann.ids[k])
        elif ann.masks is not None:
            mask, instances = self._mask(k)
            boxes = self._mask_boxes(size, instances, src=ann.mask_sources[k])
        else:
            boxes = whole_image_box(size)
        record = {
            "label": int(ann.labels[k]),
            "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float64)),
            "size": (int(size[0]), int(size[1])),
            "mask": mask,
            "id": ann.ids[k],
            "index": int(index),
        }
        if image is not None:
            record = {"image": image, **record}
        return record

    @staticmethod
    def _mask_boxes(size: tuple[int, int], instances: list[np.ndarray], src: str) -> np.ndarray:
        """The boxes of the instance masks, in image coordinates; the whole image when no
        instance has a foreground pixel."""
        h, w = size
        mh, mw = instances[0].shape
        boxes = [b for b in (box_of_mask(m) for m in instances) if b is not None]
        if not boxes:
            log.warning(
                "%s: no foreground pixel in any instance mask of the image; its box is the whole image",
                src,
            )
            return whole_image_box(size)
        b = np.stack(boxes)
        if (mh, mw) != (h, w):
            b = b * np.array([w / mw, h / mh, w / mw, h / mh])
        return b
