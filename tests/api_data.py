"""The inputs of tests/test_api.py, and the work one process of its DDP test does.

A module of its own, importable by the processes the DDP test spawns (the test module
would import pytest and the CLI helpers too). Every input is made from fixed seeds, so
each process makes the same images, maps and annotations; `api_metrics` scores the share
of one rank of a world of processes with every metric of `wsol.metrics`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tests import helpers
from tests.helpers import BOX_ROWS, write_lines

# id, (height, width) of its masks
MASK_ROWS = [
    ("test/c0/x0.jpg", (40, 60)),
    ("test/c1/x1.jpg", (100, 80)),
    ("test/c2/x2.jpg", (32, 32)),
]
NUM_CLASSES = 3


def write_box_metadata(folder: Path) -> Path:
    """`BOX_ROWS` as a folder of wsolevaluation metadata."""
    return helpers.write_box_metadata(folder, BOX_ROWS)


def box_targets() -> dict:
    """`BOX_ROWS` as API targets: suite boxes (the inclusive ones with ``x1 + 1``,
    ``y1 + 1``: what the metadata reader makes of them), (height, width), labels."""
    return {
        "boxes": [np.array(r[3], dtype=np.float64) + np.array([0, 0, 1, 1]) for r in BOX_ROWS],
        "sizes": np.array([(r[2][1], r[2][0]) for r in BOX_ROWS]),
        "labels": np.array([r[1] for r in BOX_ROWS]),
        "ids": [r[0] for r in BOX_ROWS],
    }


def _instances(i: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inst1 = np.zeros((h, w), np.uint8)
    inst1[h // 4 : h // 2, w // 5 : w // 2] = 255
    inst2 = np.zeros((h, w), np.uint8)
    inst2[h // 2 : h - 2, w // 2 : w - 3] = 1 if i == 1 else 255  # any nonzero value is object
    ignore = np.zeros((h, w), np.uint8)
    ignore[: h // 3, :] = 255
    return inst1, inst2, ignore


def write_mask_metadata(folder: Path, masks: Path) -> Path:
    """`MASK_ROWS` in the OpenImages layout: two instance PNGs each, an ignore PNG for all
    but the last image, no image_sizes.txt."""
    from PIL import Image

    loc = []
    for i, (image_id, (h, w)) in enumerate(MASK_ROWS):
        stem = image_id[:-4]
        inst1, inst2, ignore = _instances(i, h, w)
        for name, arr in (("m1", inst1), ("m2", inst2), ("ignore", ignore)):
            if name == "ignore" and i == len(MASK_ROWS) - 1:
                continue
            (masks / f"{stem}_{name}.png").parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(masks / f"{stem}_{name}.png")
        ignore_png = f"{stem}_ignore.png" if i != len(MASK_ROWS) - 1 else ""
        loc += [f"{image_id},{stem}_m1.png,{ignore_png}", f"{image_id},{stem}_m2.png,"]
    write_lines(folder / "image_ids.txt", [r[0] for r in MASK_ROWS])
    write_lines(folder / "class_labels.txt", [f"{r[0]},{k}" for k, r in enumerate(MASK_ROWS)])
    write_lines(folder / "localization.txt", loc)
    return folder


def mask_targets() -> dict:
    """`MASK_ROWS` as API targets: the 0/1/255 masks at their own resolution."""
    out = []
    for i, (_, (h, w)) in enumerate(MASK_ROWS):
        inst1, inst2, ignore = _instances(i, h, w)
        fg = (inst1 > 0) | (inst2 > 0)
        m = fg.astype(np.uint8)
        if i != len(MASK_ROWS) - 1:
            m[(ignore > 0) & ~fg] = 255
        out.append(m)
    return {"masks": out, "ids": [r[0] for r in MASK_ROWS]}


def blob(cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """A separable Gaussian on the 224 grid, maximum 1."""
    u = np.arange(224) + 0.5
    m = np.outer(np.exp(-((u - cy) ** 2) / (2 * sy**2)), np.exp(-((u - cx) ** 2) / (2 * sx**2)))
    return m / m.max()


def box_scoremaps() -> list[np.ndarray]:
    """One 224x224 score map per `BOX_ROWS` image, in every dtype the reader takes: a
    rectangle on its first box, blobs on and off the boxes, zeros, noise."""
    rng = np.random.default_rng(0)
    m0 = np.zeros((224, 224), np.float32)
    m0[56:194, 22:134] = 1.0
    return [
        m0,
        blob(90, 120, 35, 45),
        np.zeros((224, 224), np.float16),
        rng.random((224, 224)),
        blob(70, 60, 30, 20).astype(np.float32),
    ]


def mask_scoremaps() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [
        blob(80, 120, 50, 30),
        blob(150, 160, 40, 40).astype(np.float32),
        rng.random((224, 224)),
    ]


def raw_maps(n: int, seed: int = 0) -> torch.Tensor:
    """(n, NUM_CLASSES, 14, 14) float32 raw maps (smooth noise, any sign), as a CAM gives."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, NUM_CLASSES, 7, 7, generator=g)
    return torch.nn.functional.interpolate(x, size=(14, 14), mode="bilinear").contiguous()


def guess_classes(labels: np.ndarray) -> np.ndarray:
    """(B, 1 + NUM_CLASSES - 1): the label, then the other classes (some right, some
    wrong top-1 guesses: image b guesses class b % NUM_CLASSES first)."""
    rows = []
    for b, y in enumerate(labels.tolist()):
        first = b % NUM_CLASSES
        rest = [c for c in range(NUM_CLASSES) if c != first]
        rows.append([y, first, *rest[:1]])
    return np.array(rows)


def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _pick(targets: dict, idx: list[int]) -> dict:
    return {k: [v[i] for i in idx] if isinstance(v, list) else v[idx] for k, v in targets.items()}


def api_metrics(rank: int, world: int, batch_size: int = 2) -> dict[str, dict[str, float]]:
    """Every metric of `wsol.metrics` on the images ``rank, rank + world, ...`` of the
    test's inputs, in batches of ``batch_size``; ``compute()`` of each (summed over the
    processes when a process group is up)."""
    from wsol.metrics import (
        Cam2016Error,
        Cam2016OfficialError,
        MaxBoxAccV2,
        PxAP,
        Targets,
        WSOLEvaluation,
    )

    boxes, masks = box_targets(), mask_targets()
    scoremaps, mask_maps = box_scoremaps(), mask_scoremaps()
    raw = raw_maps(len(BOX_ROWS))
    classes = guess_classes(boxes["labels"])
    metrics = {
        "wsolevaluation": WSOLEvaluation(scoremaps=True),
        "pxap": PxAP(scoremaps=True),
        "maxboxacc_v2_raw": MaxBoxAccV2(),
        "cam2016": Cam2016Error(),
        "cam2016_gt_only": Cam2016Error(),
        "cam2016_official": Cam2016OfficialError(),
    }
    for idx in _batches(list(range(rank, len(BOX_ROWS), world)), batch_size):
        t = _pick(boxes, idx)
        maps = np.stack([scoremaps[i].astype(np.float64) for i in idx])
        metrics["wsolevaluation"].update(maps, t)
        metrics["maxboxacc_v2_raw"].update(raw[idx], Targets(boxes=t["boxes"], sizes=t["sizes"]))
        metrics["cam2016"].update(raw[idx], t, classes=classes[idx])
        metrics["cam2016_gt_only"].update(raw[idx, 0], t)
        metrics["cam2016_official"].update(raw[idx], t, classes=classes[idx])
    for idx in _batches(list(range(rank, len(MASK_ROWS), world)), batch_size):
        metrics["pxap"].update(np.stack([mask_maps[i] for i in idx]), _pick(masks, idx))
    return {name: m.compute() for name, m in metrics.items()}


def ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    """One process of the DDP test: a gloo process group, `api_metrics` of its share,
    written to ``out/rank<r>.json``."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = api_metrics(rank, world)
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def lightning_validate(devices: int, out: str) -> None:
    """A user's LightningModule (fixed weights: seeded) validated by a Lightning Trainer on
    ``devices`` CPU processes (``strategy="ddp"`` for 2), logging `WSOLEvaluation` and
    `Cam2016Error` each validation epoch; every rank writes their ``compute()`` to
    ``out/lightning_<devices>_rank<r>.json``. Run as ``python -m tests.api_data DEVICES
    OUT`` (Lightning's DDP starts rank 1 with the same command)."""
    import pytorch_lightning as pl
    from torch import nn
    from torch.utils.data import DataLoader

    from wsol.data.datamodule import UnpaddedDistributedSampler
    from wsol.metrics import Cam2016Error, WSOLEvaluation

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(8, NUM_CLASSES)
            self.every, self.cam2016 = WSOLEvaluation(), Cam2016Error()

        def validation_step(self, batch, batch_idx):
            f = self.features(batch["images"])
            logits = self.fc(f.mean(dim=(2, 3)))
            classes = torch.cat([batch["labels"][:, None], logits.topk(2, dim=1).indices], 1)
            maps = torch.einsum("bjk,bkhw->bjhw", self.fc.weight[classes], f)
            t = {k: batch[k] for k in ("boxes", "sizes", "labels", "masks")}
            self.every.update(maps, t)
            self.cam2016.update(maps, t, classes=classes)

        def on_validation_epoch_end(self):
            result = {"every": self.every.compute(), "cam2016": self.cam2016.compute()}
            self.log_dict({f"val/{k}": v for k, v in result["every"].items()})
            rank = self.global_rank
            (Path(out) / f"lightning_{devices}_rank{rank}.json").write_text(json.dumps(result))
            self.every.reset()
            self.cam2016.reset()

    g = torch.Generator().manual_seed(1)
    items = []
    for i in range(9):  # shares of 5 and 4 images under 2 processes
        x0, y0 = torch.randint(0, 20, (2,), generator=g).tolist()
        mask = np.zeros((32, 32), np.uint8)
        mask[y0 : y0 + 12, x0 : x0 + 12] = 1
        mask[:2] = 255
        items.append(
            {
                "image": torch.rand(3, 32, 32, generator=g),
                "label": i % NUM_CLASSES,
                "box": [x0, y0, x0 + 12, y0 + 12],
                "mask": mask,
            }
        )

    def collate(batch: list[dict]) -> dict:
        return {
            "images": torch.stack([it["image"] for it in batch]),
            "labels": torch.tensor([it["label"] for it in batch]),
            "boxes": [torch.tensor([it["box"]], dtype=torch.float64) for it in batch],
            "sizes": torch.tensor([[32, 32]] * len(batch)),
            "masks": [it["mask"] for it in batch],
        }

    loader = DataLoader(
        items, batch_size=2, sampler=UnpaddedDistributedSampler(items), collate_fn=collate
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(Net(), loader)


if __name__ == "__main__":
    import sys

    lightning_validate(int(sys.argv[1]), sys.argv[2])
