"""Box-aware transforms (torchvision transforms v2 with tv_tensors).

Training: (real data) resize to ``resize_size`` x ``resize_size`` and random crop
``input_size``, or (synthetic, already at size) no geometric change; random horizontal
flip; normalisation. The image's boxes and mask are transformed with it as
``train_boxes``/``train_mask`` (tv_tensors.BoundingBoxes / Mask), so they stay aligned.

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


class RecordTransform:
    """Apply a v2 pipeline to a record's image (and, when training, to copies of its boxes
    and mask); the record's original annotations are left as they are."""

    def __init__(self, pipeline: v2.Transform, geometric: bool, carry_targets: bool):
        self.pipeline = pipeline
        self.geometric = geometric
        self.carry_targets = carry_targets

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
            if mask is not None and tuple(mask.shape) == (h, w):
                inputs["mask"] = tv_tensors.Mask(torch.as_tensor(mask))
            out = self.pipeline(inputs)
            record = dict(
                record,
                image=out["image"].as_subclass(torch.Tensor),
                train_boxes=out["boxes"].as_subclass(torch.Tensor),
            )
            if "mask" in out:
                record["train_mask"] = out["mask"].as_subclass(torch.Tensor)
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
) -> RecordTransform:
    """The training or evaluation transform (see the module docstring).

    ``resize_size=None`` means "resize straight to input_size" (no crop), which is what
    the synthetic data (generated at its size) uses.
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
    return RecordTransform(v2.Compose(steps), geometric=True, carry_targets=carry_targets and train)
