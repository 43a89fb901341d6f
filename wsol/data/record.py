"""The record every reader yields, and the collate function that batches records.

A record is a dict (a `Record`):

- ``image``: float tensor (3, H, W), already transformed for the network (resized,
  normalised); at evaluation time it is the whole image resized (no crop).
- ``label``: int, 0-based class index.
- ``boxes``: float64 tensor (N, 4), N >= 1, the ground-truth boxes in the suite's box
  convention (see `wsol.protocols.boxes`: pixel-edge ``[x0, y0, x1, y1]``, x1/y1
  exclusive) in the coordinates of the *original* image, never cut by a random crop.
- ``size``: ``(height, width)`` of the original image.
- ``mask``: None, or a uint8 numpy array at the annotation's own resolution:
  0 background, 1 object (all instances OR-ed), 255 ignore. Protocols resize it.
- ``id``: str, the image id (for wsolevaluation metadata: the path relative to the data
  root, verbatim).
- ``index``: int, the position in the data set (used to count every image once).

At training time the image is augmented; ``train_boxes``/``train_mask`` (optional) hold
the boxes and mask as transformed together with the image (tv_tensors), for methods and
figures that need them; scoring never uses them. With ``data.train_targets`` other than
``labels`` a training record also holds ``foreground`` (H, W) uint8 at the input's
resolution (0 background, 1 object, 255 ignore: `wsol.data.transforms.foreground_target`),
which `collate` stacks into the batch's ``foreground`` (B, H, W).
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import torch


class Record(TypedDict, total=False):
    image: torch.Tensor
    label: int
    boxes: torch.Tensor
    size: tuple[int, int]
    mask: np.ndarray | None
    id: str
    index: int


def collate(records: list[Record]) -> dict[str, Any]:
    """Batch records: images, labels, sizes and indices are stacked; boxes, masks and
    ids (whose sizes vary) stay lists. Records without an image (annotation-only readers)
    give a batch without ``image``."""
    batch: dict[str, Any] = {}
    if records and "image" in records[0]:
        batch["image"] = torch.stack([r["image"] for r in records])
    batch |= {
        "label": torch.as_tensor([int(r["label"]) for r in records], dtype=torch.long),
        "boxes": [torch.as_tensor(r["boxes"], dtype=torch.float64).reshape(-1, 4) for r in records],
        "size": torch.as_tensor([tuple(r["size"]) for r in records], dtype=torch.long).reshape(
            -1, 2
        ),
        "mask": [r.get("mask") for r in records],
        "id": [r["id"] for r in records],
        "index": torch.as_tensor([int(r["index"]) for r in records], dtype=torch.long),
    }
    if records and "foreground" in records[0]:  # the per-pixel training target (method=fsl)
        batch["foreground"] = torch.stack([r["foreground"] for r in records])
    return batch
