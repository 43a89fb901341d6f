"""Figure 5, memory: peak resident memory of evaluating many synthetic maps through the
protocols, read after 5,000 / 20,000 / 50,000 maps (by default).

The real evaluation path without a network's cost: `EvalModule` in ``trainer.test``
with the config's localizer (CAM) and protocols (default ``[cam2016, wsolevaluation]``),
predictions.csv streamed to a temporary folder and merged at the end. The "network" is
a stub whose ``forward_features`` is the identity and whose head is the suite's
`PooledLinearHead`, so each batch's "images" *are* the conv maps: smooth random
``map_size`` x ``map_size`` maps (bicubic from 4x4 noise), one GT box of 25-75 % of the
side and a 0/1 mask per image of ``image_size`` x ``image_size`` (the CAMs of
[GT, top-5] are then 6 maps per image, as with a real network).

The whole run is one fresh process (the runner starts one per figure); a callback reads
``ru_maxrss`` (peak) and VmRSS (now) after each count, with the protocols' ``compute()``
and ``curves()`` called there. The peak after N maps of this run is the peak of a fresh
run of N maps (same sequence), so one run of the largest count gives every reading.
Target: the peak grows by less than 256 bytes per added map between the first and last
reading (a predictions row or a score map held per image would be 1 KiB to 400 KiB).
"""

from __future__ import annotations

import tempfile
from typing import Any

from wsol.bench.common import (
    compose,
    current_rss_mib,
    now,
    peak_rss_mib,
    quiet_lightning,
    row,
    say,
)

TARGET_BYTES_PER_MAP = 256


def _stub_net(channels: int, num_classes: int):
    from torch import nn

    from wsol.models.base import PooledLinearHead, WSOLNet

    class StubNet(WSOLNet):
        """forward_features = identity: the batch's "images" are the conv maps."""

        name = "bench_stub"

        def __init__(self):
            super().__init__()
            self.features = nn.Identity()
            self.head = PooledLinearHead(channels, num_classes, pool="avg")

    return StubNet()


class SyntheticMaps:
    """Batches of smooth random conv maps with boxes and masks (deterministic per index)."""

    def __init__(
        self, n: int, batch: int, channels: int, map_size: int, image_size: int, seed: int = 0
    ):
        self.n, self.batch, self.channels = n, batch, channels
        self.map_size, self.image_size, self.seed = map_size, image_size, seed

    def __len__(self) -> int:
        return (self.n + self.batch - 1) // self.batch

    def __getitem__(self, k: int) -> dict:
        import numpy as np
        import torch
        import torch.nn.functional as F

        if not 0 <= k < len(self):
            raise IndexError(k)
        start = k * self.batch
        B = min(self.batch, self.n - start)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        noise = torch.rand(B, self.channels, 4, 4, generator=g)
        maps = F.interpolate(
            noise, size=(self.map_size, self.map_size), mode="bicubic", align_corners=False
        ).clamp_min(0)
        rng = np.random.default_rng([self.seed, k])
        S = self.image_size
        boxes, masks = [], []
        for _ in range(B):
            bw, bh = (int(v) for v in rng.integers(S // 4, 3 * S // 4, 2))
            x0, y0 = int(rng.integers(0, S - bw)), int(rng.integers(0, S - bh))
            boxes.append(torch.tensor([[x0, y0, x0 + bw, y0 + bh]], dtype=torch.float64))
            m = np.zeros((S, S), dtype=np.uint8)
            m[y0 : y0 + bh, x0 : x0 + bw] = 1
            masks.append(m)
        return {
            "image": maps,
            "label": torch.as_tensor(rng.integers(0, 10, B), dtype=torch.long),
            "boxes": boxes,
            "size": torch.tensor([[S, S]] * B, dtype=torch.long),
            "mask": masks,
            "id": [f"bench/{start + i:07d}" for i in range(B)],
            "index": torch.arange(start, start + B),
        }


def _identity(x):
    return x


def run(
    overrides: list[str] | None = None,
    counts: list[int] | None = None,
    batch: int = 100,
    image_size: int = 224,
    map_size: int = 14,
    channels: int = 16,
    threads: int = 1,
) -> dict[str, Any]:
    """``threads``: torch intra-op threads for the run (1 by default: the protocols' work
    is per image and tiny, and this figure is about memory, not speed)."""
    quiet_lightning()
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from wsol.evaluation import EvalModule
    from wsol.pipeline import selected_protocols

    counts = sorted(int(c) for c in (counts or [5000, 20000, 50000]))
    if threads:
        torch.set_num_threads(int(threads))
    readings: list[dict[str, float]] = []
    t_start = now()
    start_peak = peak_rss_mib()

    class Readings(pl.Callback):
        def on_test_batch_end(self, trainer, module, outputs, b, batch_idx, dataloader_idx=0):
            done = int(b["index"][-1]) + 1
            if done in counts:
                for p in module.protocols.values():  # what the epoch end does
                    p.compute()
                    p.curves()
                readings.append(
                    {
                        "maps": done,
                        "peak_mib": peak_rss_mib(),
                        "rss_mib": current_rss_mib(),
                        "seconds": now() - t_start,
                    }
                )
                say(
                    f"  memory: {done} maps, peak {readings[-1]['peak_mib']:.1f} MiB, "
                    f"now {readings[-1]['rss_mib']:.1f} MiB, {readings[-1]['seconds']:.0f} s"
                )

    with tempfile.TemporaryDirectory(prefix="wsol-bench-mem-") as tmp:
        cfg = compose([f"paths.output_dir={tmp}", *(overrides or [])])
        if any(c % batch for c in counts):
            raise ValueError(f"every count must be a multiple of the batch ({batch})")
        net = _stub_net(channels, 10)
        module = EvalModule(
            net,
            instantiate(cfg.localizer),
            selected_protocols(cfg),
            output_dir=tmp,
            figure_images=0,
        )
        data = SyntheticMaps(counts[-1], batch, channels, map_size, image_size, int(cfg.seed))
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            callbacks=[Readings()],
            inference_mode=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.test(
            module,
            dataloaders=DataLoader(data, batch_size=None, collate_fn=_identity),
            verbose=False,
        )
        protocols = list(module.protocols)
    first, last = readings[0], readings[-1]
    growth = (last["peak_mib"] - first["peak_mib"]) * 2**20
    per_map = growth / max(1, last["maps"] - first["maps"])
    rows = []
    for r in readings:
        is_last = r is last
        rows.append(
            row(
                f"peak RSS after {r['maps']:,} maps (MiB)",
                r["peak_mib"],
                first["peak_mib"],
                r["peak_mib"] / first["peak_mib"],
                unit="MiB",
                target=f"growth < {TARGET_BYTES_PER_MAP} B/map" if is_last else None,
                met=(per_map < TARGET_BYTES_PER_MAP) if is_last else None,
            )
        )
    table = ["| maps | peak RSS MiB | RSS now MiB | seconds | ms/map |", "|---|---|---|---|---|"]
    prev_maps, prev_s = 0, 0.0
    for r in readings:
        ms = 1000.0 * (r["seconds"] - prev_s) / max(1, r["maps"] - prev_maps)
        table.append(
            f"| {r['maps']:,} | {r['peak_mib']:.1f} | {r['rss_mib']:.1f} | {r['seconds']:.1f} | {ms:.2f} |"
        )
        prev_maps, prev_s = r["maps"], r["seconds"]
    details = "\n".join(
        [
            f"EvalModule in trainer.test with protocols {', '.join(protocols)}; raw maps "
            f"{map_size}x{map_size} ({channels} channels -> CAMs of GT + top-5), images and "
            f"masks {image_size}x{image_size}, batches of {batch}; predictions.csv streamed; "
            f"torch threads {torch.get_num_threads()}. "
            f"Peak before the run {start_peak:.1f} MiB.",
            "",
            *table,
            "",
            f"Peak growth from {first['maps']:,} to {last['maps']:,} maps: "
            f"{growth / 2**20:.2f} MiB = {per_map:.1f} bytes per added map.",
        ]
    )
    return {
        "figure": "memory",
        "title": "Memory: peak RSS of evaluating synthetic maps through the protocols",
        "rows": rows,
        "notes": [
            "one fresh process; ru_maxrss read after each count (baseline = the first "
            "count's peak, ratio = peak / that)",
        ],
        "details": details,
        "readings": readings,
    }
