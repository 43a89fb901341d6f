"""Box-aware transforms (torchvision transforms v2 with tv_tensors).

Training: (real data) resize to ``resize_size`` x ``resize_size`` and random crop
``input_size``, or (synthetic, already at size) no geometric change; random horizontal
flip; normalisation. The image's boxes and mask are transformed with it as
``train_boxes``/``train_mask`` (tv_tensors.BoundingBoxes / Mask), so they stay aligned
(a mask at another resolution than its image is first resized to it, nearest-neighbour).
With ``foreground`` set (``data.train_targets``, for methods trained on the object's
pixels: ``method=fsl``) the record also gets ``foreground``, the per-pixel training
target at the training input's resolution (see `foreground_target`).

Evaluation: the whole image resized to ``input_size`` x ``input_size`` (no crop) and
normalised. Ground-truth ``boxes``/``mask`` of a record always stay the *original*
annotations; each protocol maps them as it defines (``cam2016`` scores the CAM at the
original image size, ``wsolevaluation`` at 224x224).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

#: the training targets a data module can deliver (``data.train_targets``): the image
#: labels only; the foreground of each image (its mask where it has one, else its boxes
#: filled); the boxes filled even where a mask exists
TRAIN_TARGETS = ("labels", "foreground", "boxes")
#: the value of a `foreground_target` pixel that no loss may use (a mask's ignore region)
IGNORE = 255


def foreground_target(
    size: tuple[int, int], boxes: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The per-pixel foreground (H, W) uint8 of an image of ``size`` (height, width) as
    the network sees it: ``mask`` (0 background, 1 object, `IGNORE`) when given, else 1 on
    every pixel whose centre lies inside one of ``boxes`` (N, 4), suite convention
    (pixel-edge XYXY, x1/y1 exclusive: the box ``[i, k, j + 1, l + 1]`` fills columns
    ``i..j`` and rows ``k..l`` exactly), 0 elsewhere. Box data has no pixel annotation, so
    its boxes stand for the object's pixels, as Choe et al. (CVPR 2020) train their
    few-shot baseline on box data."""
    h, w = (int(v) for v in size)
    if mask is not None:
        if tuple(mask.shape) != (h, w):
            raise ValueError(f"mask of shape {tuple(mask.shape)} for an image of {h}x{w}")
        return mask.to(torch.uint8)
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 1, 1, 4)
    cy = torch.arange(h, dtype=torch.float64).view(1, h, 1) + 0.5
    cx = torch.arange(w, dtype=torch.float64).view(1, 1, w) + 0.5
    inside = (cx >= b[..., 0]) & (cx < b[..., 2]) & (cy >= b[..., 1]) & (cy < b[..., 3])
    return inside.any(dim=0).to(torch.uint8)


class RecordTransform:
    """Apply a v2 pipeline to a record's image (and, when training, to copies of its boxes
    and mask); the record's original annotations are left as they are. ``foreground``
    (one of `TRAIN_TARGETS` but ``labels``) adds the record's ``foreground``."""

    def __init__(
        self,
        pipeline: v2.Transform,
        geometric: bool,
        carry_targets: bool,
        foreground: str | None = None,
    ):
        self.pipeline = pipeline
        self.geometric = geometric
        self.carry_targets = carry_targets or foreground is not None
        self.foreground = foreground

    def __call__(self, record: dict) -> dict:
        image = record["image"]
        if not isinstance(image, torch.Tensor):
            image = v2.functional.pil_to_tensor(image)
        image = tv_tensors.Image(image)
        if self.carry_targets:
            h, w = image.shape[-2:]
            boxes = tv_tensors.BoundingBoxes(
                record["boxes"].clone(), format="XYXY", canvas_size=(h, w)
            )
            inputs = {"image": image, "boxes": boxes}
            mask = record.get("mask")
            if mask is not None:
                mask = tv_tensors.Mask(torch.as_tensor(mask))
                if tuple(mask.shape) != (h, w):  # nearest: 0, 1 and ignore stay what they are
                    mask = v2.functional.resize(mask, [h, w])
                inputs["mask"] = mask
            out = self.pipeline(inputs)
            record = dict(
                record,
                image=out["image"].as_subclass(torch.Tensor),
                train_boxes=out["boxes"].as_subclass(torch.Tensor),
            )
            if "mask" in out:
                record["train_mask"] = out["mask"].as_subclass(torch.Tensor)
            if self.foreground is not None:
                use_mask = self.foreground == "foreground"
                record["foreground"] = foreground_target(
                    record["image"].shape[-2:],
                    record["train_boxes"],
                    record.get("train_mask") if use_mask else None,
                )
            return record
        return dict(record, image=self.pipeline(image).as_subclass(torch.Tensor))


def build_transform(
    train: bool,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize_size: int | None = None,
    crop: bool = True,
    flip: bool = True,
    carry_targets: bool = False,
    foreground: str | None = None,
) -> RecordTransform:
    """The training or evaluation transform (see the module docstring).

    ``resize_size=None`` means "resize straight to input_size" (no crop), which is what
    the synthetic data (generated at its size) uses. ``foreground`` (training only):
    ``"foreground"`` or ``"boxes"`` adds the record's per-pixel target (`foreground_target`).
    """
    steps: list[v2.Transform] = []
    if train:
        if resize_size and crop:
            steps += [
                v2.Resize((resize_size, resize_size), antialias=True),
                v2.RandomCrop(input_size),
            ]
        else:
            steps += [v2.Resize((input_size, input_size), antialias=True)]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
    else:
        steps.append(v2.Resize((input_size, input_size), antialias=True))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return RecordTransform(
        v2.Compose(steps),
        geometric=True,
        carry_targets=carry_targets and train,
        foreground=foreground if train else None,
    )
