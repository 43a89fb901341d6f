"""What the real-data readers share: strict parsing of annotation lines with errors that
name the file, the line and the value; paths that cannot leave the data root; images and
masks decoded completely (a truncated file is an error, never half an image); the box
checks and the box policy.

Box policy (the same in every reader, see docs/DATASETS.md):

- a box with ``x1 < x0`` or ``y1 < y0`` in its file's own convention (an empty box in
  the suite's) is refused;
- a box that extends past the image is **clipped** to the image and reported: the reader
  logs one warning per annotation file (when image sizes are known at start-up) or per
  image (when they are read from the image), and keeps the ``file:line`` of every
  clipped box in its ``clipped`` list;
- a box that lies completely outside its image (nothing left after clipping) is refused.

Only the leaf modules of `wsol` are imported here (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from wsol.errors import WSOLError, where

log = logging.getLogger("wsol.data")

# Suffixes of files a folder-layout reader (ImageNet) takes as images.
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"})


# ---- settings ------------------------------------------------------------------------
def require_dir(value: object, setting: str, what: str) -> Path:
    """``value`` as a Path to an existing folder, else a one-line error naming the setting."""
    if value is None or str(value).strip() in ("", "???"):
        raise WSOLError(f"{setting} is not set; set {setting} to {what}")
    path = Path(os.path.expanduser(str(value)))
    if not path.exists():
        raise WSOLError(f"{setting}={path} does not exist; set {setting} to {what}")
    if not path.is_dir():
        raise WSOLError(f"{setting}={path} is not a folder; set {setting} to {what}")
    return path


def require_file(path: Path, what: str = "") -> Path:
    if not path.is_file():
        hint = f" ({what})" if what else ""
        raise WSOLError(f"{path} does not exist{hint}")
    return path


# ---- lines and fields ----------------------------------------------------------------
def read_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of a text file as ``(line_number, text)`` (1-based, ``\\r\\n`` and a
    UTF-8 byte-order mark accepted). Blank lines at the end of the file are dropped; a
    blank line anywhere else is refused (nothing is skipped silently)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WSOLError(f"{path} does not exist") from None
    except OSError as e:
        raise WSOLError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise WSOLError(f"{where(path, line)}: not UTF-8 text (byte {raw[e.start]:#04x})") from None
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    out = []
    for i, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            raise WSOLError(f"{where(path, i)}: blank line (every line must hold one record)")
        out.append((i, line))
    return out


def fields(
    path: Path, line_no: int, line: str, sep: str | None, count: int, form: str
) -> list[str]:
    """Split a line into exactly ``count`` fields (``sep=None``: whitespace, the last
    field taking the rest when the form says so is the caller's business)."""
    parts = line.split(sep) if sep is not None else line.split()
    if len(parts) != count:
        few = "too few" if len(parts) < count else "too many"
        raise WSOLError(
            f"{where(path, line_no)}: {few} fields ({len(parts)}, expected {count}: {form}): {line!r}"
        )
    return parts


def to_int(path: Path, line_no: int | None, value: str, what: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise WSOLError(f"{where(path, line_no)}: {what} is not an integer: {value!r}") from None


def to_float(path: Path, line_no: int | None, value: str, what: str) -> float:
    try:
        v = float(value.strip())
    except ValueError:
        raise WSOLError(f"{where(path, line_no)}: {what} is not a number: {value!r}") from None
    if not math.isfinite(v):
        raise WSOLError(f"{where(path, line_no)}: {what} is not a finite number: {value!r}")
    return v


def check_label(
    path: Path, line_no: int | None, label: int, num_classes: int, value: str, setting: str = ""
) -> int:
    if not 0 <= label < num_classes:
        hint = (
            f" (set {setting} if the data set has more classes)"
            if setting and label >= num_classes
            else ""
        )
        raise WSOLError(
            f"{where(path, line_no)}: class label {value!r} is out of range 0..{num_classes - 1}{hint}"
        )
    return label


# ---- paths ---------------------------------------------------------------------------
def check_relpath(rel: str, path: Path, line_no: int | None, what: str = "path") -> str:
    """Refuse (lexically) a relative path that is empty, absolute or climbs with ``..``.
    Symbolic links are checked when the file is opened (`inside`)."""
    if not rel or not rel.strip():
        raise WSOLError(f"{where(path, line_no)}: empty {what}")
    if "\x00" in rel:
        raise WSOLError(f"{where(path, line_no)}: {what} holds a NUL character: {rel!r}")
    if not rel.startswith(("/", "\\")) and ".." not in rel and (len(rel) < 2 or rel[1] != ":"):
        return rel  # the common case, without building a path object
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("\\") or (len(rel) > 1 and rel[1] == ":"):
        raise WSOLError(
            f"{where(path, line_no)}: {what} must be relative to the data root, got the absolute path {rel!r}"
        )
    if ".." in p.parts:
        raise WSOLError(f"{where(path, line_no)}: {what} leads outside the data root: {rel!r}")
    return rel


def inside(base: Path, rel: str, source: str) -> Path:
    """``base / rel``, refused when it resolves (following symbolic links) outside
    ``base`` (itself resolved, so a data root that is a link is fine)."""
    base_r = base.resolve()
    target = (base / rel).resolve()
    if target != base_r and base_r not in target.parents:
        raise WSOLError(
            f"{source}: {rel!r} leads outside the data root {base_r} (resolves to {target})"
        )
    return target


# ---- images and masks ----------------------------------------------------------------
def _open_error(path: Path, source: str, e: BaseException) -> WSOLError:
    if isinstance(e, FileNotFoundError):
        return WSOLError(f"image file {path} does not exist ({source})")
    if isinstance(e, IsADirectoryError):
        return WSOLError(f"image file {path} is a folder, not an image ({source})")
    if isinstance(e, PermissionError):
        return WSOLError(f"image file {path} is not readable: permission denied ({source})")
    return WSOLError(f"image file {path} is corrupt or truncated: {e} ({source})")


def load_rgb(path: Path, source: str) -> torch.Tensor:
    """Decode the whole image (never a truncated one) as a uint8 tensor (3, H, W)."""
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")  # decodes every byte; a truncated file raises here
    except Exception as e:  # any decoder failure is a problem with the file
        raise _open_error(path, source, e) from None
    arr = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def header_size(path: Path, source: str) -> tuple[int, int]:
    """(height, width) from the image file's header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as e:
        raise _open_error(path, source, e) from None
    return int(h), int(w)


def load_gray(path: Path, source: str) -> np.ndarray:
    """A mask PNG as a 2-D uint8 array, converted to 8-bit grey as OpenCV's
    ``IMREAD_GRAYSCALE`` does (16-bit values are divided by 256)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.int64) >> 8
                return np.clip(arr, 0, 255).astype(np.uint8)
            return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    except Exception as e:
        if isinstance(e, FileNotFoundError):
            raise WSOLError(f"mask file {path} does not exist ({source})") from None
        raise WSOLError(f"mask file {path} is corrupt or unreadable: {e} ({source})") from None


def check_image_size(
    path: Path, image: torch.Tensor, expected: tuple[int, int] | None, source: str
) -> tuple[int, int]:
    """The decoded image's (height, width); refused when the annotations said otherwise."""
    h, w = int(image.shape[-2]), int(image.shape[-1])
    if expected is not None and (h, w) != tuple(expected):
        eh, ew = expected
        raise WSOLError(
            f"image file {path} is {w}x{h} (width x height) but {source} says {ew}x{eh}; "
            "the annotations do not belong to this image"
        )
    return h, w


# ---- boxes ---------------------------------------------------------------------------
def check_box(box: Sequence[float], source: str, value: str) -> np.ndarray:
    """A suite box ``[x0, y0, x1, y1]`` (x1, y1 exclusive), refused when empty (in the
    file's convention: x1 < x0 or y1 < y0, or a width/height <= 0)."""
    b = np.asarray(box, dtype=np.float64)
    if b[2] <= b[0] or b[3] <= b[1]:
        raise WSOLError(f"{source}: box has x1 < x0 or y1 < y0 (empty): {value!r}")
    return b


def clip_boxes(
    boxes: np.ndarray, size: tuple[int, int], sources: Iterable[str], values: Iterable[str]
) -> tuple[np.ndarray, list[str]]:
    """Clip suite boxes (N, 4) to an image of ``size`` (height, width). Returns the boxes
    and the sources (``file:line``) of the clipped ones; a box with nothing inside the
    image is refused."""
    h, w = size
    if all(b[0] >= 0 and b[1] >= 0 and b[2] <= w and b[3] <= h for b in boxes.tolist()):
        return boxes, []  # the common case, without numpy's per-call overhead
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    clipped = []
    for b, o, src, val in zip(boxes, out, sources, values):
        if o[2] <= o[0] or o[3] <= o[1]:
            raise WSOLError(f"{src}: box lies outside its {w}x{h} (width x height) image: {val!r}")
        if not np.array_equal(b, o):
            clipped.append(src)
    return out, clipped


def report_clipped(clipped: list[str], what: str) -> None:
    if clipped:
        log.warning(
            "%s: %d box(es) extend outside their image and were clipped to it (first: %s)",
            what,
            len(clipped),
            clipped[0],
        )


def whole_image_box(size: tuple[int, int]) -> np.ndarray:
    """The placeholder box of an image without box annotations: the whole image. Used
    only so that every record has N >= 1 boxes; never scored (training splits)."""
    h, w = size
    return np.array([[0.0, 0.0, float(w), float(h)]], dtype=np.float64)


def box_of_mask(mask: np.ndarray) -> np.ndarray | None:
    """Suite box around the nonzero pixels of a 2-D mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


# ---- classes -------------------------------------------------------------------------
def strip_number(name: str) -> str:
    """``001.Black_footed_Albatross`` -> ``Black_footed_Albatross``."""
    head, dot, tail = name.partition(".")
    return tail if dot and head.isdigit() and tail else name


def seeded_per_class(
    labels: np.ndarray, per_class: int, seed: int, source: str, setting: str
) -> np.ndarray:
    """Sorted indices of ``per_class`` items of every class present, drawn with ``seed``."""
    rng = np.random.default_rng(int(seed))
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size < per_class:
            raise WSOLError(
                f"{source}: class {int(c)} has only {idx.size} image(s), fewer than {setting}={per_class}"
            )
        chosen.append(np.sort(rng.choice(idx, size=per_class, replace=False)))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


class AnnotatedImages(Dataset):
    """Base of the real-data readers: a record is ``_record(index, image)``; with
    ``load_images=False`` the records come without images (annotations only).

    Subclasses set ``load_images`` and ``transform`` and define ``__len__``,
    ``image_path(index)``, ``image_source(index)`` (the file and line that name the
    image, for error messages) and ``_record(index, image)``."""

    load_images: bool = True
    transform = None

    def image_path(self, index: int) -> Path:
        raise NotImplementedError

    def image_source(self, index: int) -> str:
        raise NotImplementedError

    def _record(self, index: int, image: torch.Tensor | None) -> dict:
        raise NotImplementedError

    def annotation(self, index: int) -> dict:
        """The record without its image (boxes, size, mask, label, id, index)."""
        return self._record(int(index), None)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if not self.load_images:
            return self.annotation(index)
        image = load_rgb(self.image_path(index), self.image_source(index))
        record = self._record(index, image)
        return self.transform(record) if self.transform is not None else record
