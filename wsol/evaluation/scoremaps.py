"""Reading score maps from disk (mode 2 of ``python -m wsol.evaluate``): the
annotations of one folder of wsolevaluation metadata (`MetadataAnnotations`, no image
read) and the ``<image_id>.npy`` map of each of its images (`load_scoremap`,
`ScoremapDataset`), checked as wsolevaluation's evaluator expects them."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wsol.data.common import require_dir
from wsol.data.wsol_metadata import SPLITS, WSOLMetadataDataset
from wsol.errors import WSOLError
from wsol.protocols.wsolevaluation import check_scoremap

__all__ = ["MetadataAnnotations", "ScoremapDataset", "load_scoremap"]

#: label range accepted from a metadata folder of score maps (their labels are not used)
_ANY_NUM_CLASSES = 2**31 - 1
_NPY_MAGIC = b"\x93NUMPY"


def _sniff_kind(folder: Path) -> str:
    """``boxes`` or ``masks``: by the number of fields of localization.txt's first line."""
    f = folder / "localization.txt"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(f, encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip():
                    return "masks" if len(line.rstrip("\r\n").split(",")) == 3 else "boxes"
    return "boxes"  # missing or empty: the reader says what is wrong


@contextlib.contextmanager
def _as_split(folder: Path) -> Iterator[tuple[Path, str, Callable[[str], str]]]:
    """(metadata_root, split, fix) such that ``metadata_root / split`` is ``folder``: its
    parent when the folder is named train/val/test, else a temporary folder with a link
    named ``test``; ``fix`` rewrites the temporary path in messages to ``folder``."""
    if folder.name in SPLITS:
        yield folder.parent, folder.name, lambda s: s
        return
    with tempfile.TemporaryDirectory(prefix="wsol-metadata-") as tmp:
        link = Path(tmp) / "test"
        link.symlink_to(folder.resolve(), target_is_directory=True)
        yield Path(tmp), "test", lambda s: s.replace(str(link), str(folder))


class MetadataAnnotations(Dataset):
    """The records (no image) of one folder of wsolevaluation metadata, read with
    `WSOLMetadataDataset` (annotation-only). Box records carry their boxes and the image
    size of ``image_sizes.txt``; mask records carry the 0/1/255 mask and no box (PxAP
    only, as wsolevaluation scores masks)."""

    def __init__(self, folder: str | os.PathLike, masks: str | os.PathLike | None = None):
        folder = require_dir(
            folder, "metadata", "the folder of image_ids.txt, class_labels.txt, localization.txt"
        )
        self.folder = folder
        self.kind = _sniff_kind(folder)
        sizes_file = folder / "image_sizes.txt"
        sizes = sizes_file.is_file() and sizes_file.stat().st_size > 0  # OpenImages: empty
        if self.kind == "masks":
            if masks is None:
                raise WSOLError(
                    f"{folder / 'localization.txt'} lists mask PNGs: set masks=DIR to the folder they are relative to"
                )
            masks = require_dir(masks, "masks", "the folder the mask PNGs are relative to")
        elif not sizes:
            raise WSOLError(
                f"{sizes_file} is missing or empty: scoring boxes on 224x224 score maps needs each image's size"
            )
        with _as_split(folder) as (root, split, fix):
            try:
                ds = WSOLMetadataDataset(
                    split=split,
                    root=None,  # no image is read (mask sizes come from the masks)
                    metadata_root=str(root),
                    dataset_name="OpenImages" if self.kind == "masks" else "CUB",
                    num_classes=_ANY_NUM_CLASSES,
                    mask_root=str(masks) if masks is not None else None,
                    load_images=False,
                )
            except WSOLError as e:
                raise WSOLError(fix(str(e))) from None
            ann = ds.ann
            ann.folder = folder
            for name in ("mask_sources",):
                if getattr(ann, name) is not None:
                    setattr(ann, name, [fix(s) for s in getattr(ann, name)])
            if ann.box_sources is not None:
                ann.box_sources = [[fix(s) for s in srcs] for srcs in ann.box_sources]
        if not ann.has_localization:
            raise WSOLError(f"{folder / 'localization.txt'} does not exist: nothing to score")
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    @property
    def ids(self) -> list[str]:
        return self.ds.ids

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if self.kind == "boxes":
            return self.ds.annotation(index)
        k = int(self.ds.order[index])
        ann = self.ds.ann
        mask, _ = self.ds._mask(k)  # the reader's get_mask (instances OR-ed, ignore = 255)
        size = ann.sizes[k] if ann.sizes is not None else tuple(mask.shape)
        return {
            "label": int(ann.labels[k]),
            "boxes": torch.zeros((0, 4), dtype=torch.float64),
            "size": (int(size[0]), int(size[1])),
            "mask": mask,
            "id": ann.ids[k],
            "index": index,
        }


def load_scoremap(folder: Path, image_id: str, size: int | None = 224) -> np.ndarray:
    """``folder/<image_id>.npy`` checked as a score map (`check_scoremap`), as float64;
    `WSOLError` naming the file when it is missing, not a .npy array or not a valid map."""
    path = folder / f"{image_id}.npy"
    label = f"score map {path}"
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            if head != _NPY_MAGIC:
                raise WSOLError(
                    f"{label} is not a .npy file (it starts with {head!r}; write it with numpy.save)"
                )
            f.seek(0)
            array = np.load(f, allow_pickle=False)
    except FileNotFoundError:
        raise WSOLError(
            f"{label} does not exist (scoremaps= must hold <image_id>.npy for image {image_id!r})"
        ) from None
    except IsADirectoryError:
        raise WSOLError(f"{label} is a folder, not a .npy file") from None
    except (ValueError, OSError, EOFError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise WSOLError(f"{label} cannot be read as a numpy array: {msg}") from None
    return check_scoremap(array, label, size)


class ScoremapDataset(Dataset):
    """Annotation records plus their score map (``scoremap``: float64 (size, size))."""

    def __init__(self, annotations: Dataset, folder: str | os.PathLike, size: int = 224):
        self.annotations = annotations
        self.folder = require_dir(folder, "scoremaps", "the folder of score maps <image_id>.npy")
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.annotations[index])
        record["scoremap"] = load_scoremap(self.folder, record["id"], self.size)
        return record
