"""Figure 3, data: images per second that one synthetic-data worker makes, against what
training consumes (figure 2's rate; the ratio is filled in by the runner).

Two readings of the real training data set (`WSOLDataModule.dataset("train")`: the
`SyntheticWSOL` reader and the training transform, flips included) and `collate`:

- **one DataLoader worker** (the number compared with training): the job's
  ``train_dataloader()`` with ``num_workers=1`` (persistent, shuffled, as configured),
  drained by a main process that does nothing else; the first batch (worker start) is
  not timed;
- **in-process, one thread**: ``collate([loader.dataset[k] for k in batch_keys])`` over
  the train loader's own sampler, with ``torch.set_num_threads(1)`` (what a worker
  does, without the inter-process copy).
"""

from __future__ import annotations

import tempfile
from typing import Any

from wsol.bench.common import compose, median, now, quiet_lightning, row, say, spread

TARGET_RATIO = 5.0


def _worker_rate(dm, images: int) -> float:
    """Images/s through the job's train loader with one worker (first batch untimed)."""
    dm.num_workers = 1
    dm.persistent_workers = True
    loader = dm.train_dataloader()
    n_batches = max(2, min(len(loader), images // dm.batch_size + 1))
    it = iter(loader)
    try:
        next(it)  # the worker's start
        t0 = now()
        got = 0
        for _ in range(n_batches - 1):
            got += int(next(it)["image"].shape[0])
        return got / (now() - t0)
    finally:
        del it


def _inprocess_rate(dm, images: int) -> float:
    """Images/s of what a worker does, in this process on one thread: the train
    loader's own dataset, sampler keys and collate_fn, without the inter-process copy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dm.num_workers = 0
        dm.persistent_workers = False
        loader = dm.train_dataloader()
        batches = []
        for keys in loader.batch_sampler:
            batches.append(list(keys))
            if len(batches) * dm.batch_size >= images + dm.batch_size:
                break
        ds, collate = loader.dataset, loader.collate_fn
        collate([ds[k] for k in batches[0]])  # warm-up
        n = 0
        t0 = now()
        for keys in batches[1:]:
            collate([ds[k] for k in keys])
            n += len(keys)
        return n / (now() - t0)
    finally:
        torch.set_num_threads(threads)


def run(overrides: list[str] | None = None, images: int = 1024, repeats: int = 3) -> dict[str, Any]:
    quiet_lightning()
    from wsol.pipeline import build_data

    with tempfile.TemporaryDirectory(prefix="wsol-bench-cfg-") as tmp:
        cfg = compose([f"paths.output_dir={tmp}", *(overrides or [])])
        if "cache_splits" in cfg.data.dataset:
            # rendering, not the in-memory cache of later epochs: what an epoch 1 costs
            cfg.data.dataset.cache_splits = []
        dm = build_data(cfg)
        worker, inproc = [], []
        for r in range(repeats):
            worker.append(_worker_rate(dm, images))
            inproc.append(_inprocess_rate(dm, images))
            say(
                f"  data repeat {r + 1}/{repeats}: one worker {worker[-1]:.0f} img/s, "
                f"in-process {inproc[-1]:.0f} img/s"
            )
    w, i = median(worker), median(inproc)
    size = int(cfg.data.input_size)
    return {
        "figure": "data",
        "title": "Data: one synthetic-data worker vs what training consumes (images/s)",
        "rows": [
            # baseline/ratio/met are filled in by the runner from the train figure
            row(
                f"one loader worker, synthetic {size}px + train transform (img/s)",
                w,
                unit="img/s",
                target=f"ratio >= {TARGET_RATIO:g}",
            ),
            row(f"in-process, one thread, {size}px (img/s; no target)", i, unit="img/s"),
        ],
        "notes": [
            "ratio = one worker's images/s / the suite's training images/s (figure train); "
            f"median of {repeats} repeats of about {images} images",
        ],
        "details": (
            f"One DataLoader worker: {', '.join(f'{x:.0f}' for x in worker)} img/s "
            f"(range {spread(worker)}); in-process one thread: "
            f"{', '.join(f'{x:.0f}' for x in inproc)} img/s. Batch size {dm.batch_size}, "
            f"{size}x{size} images, {cfg.data.dataset.get('num_classes')} classes, "
            f"difficulty {cfg.data.dataset.get('difficulty')}."
        ),
        "worker_rate": w,
    }
