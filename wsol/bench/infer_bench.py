"""Figure 4, CAMs and boxes at inference: the suite's evaluation (the real
`EvalModule.test_step` in Lightning's test loop, with the config's localizer and
protocols, default ``[cam2016, wsolevaluation]``) against a plain forward pass of the
same network on the same batches.

- The network is built from the config (`wsol.pipeline.build_net`, untrained: the
  timing does not depend on the weights, only the maps' shapes do) and put in
  ``channels_last`` when the config trains that way (a trained network comes out of
  training so); both sides use the same object, in fp32, under ``no_grad``, as
  `wsol.pipeline.evaluate_network` runs them (``precision=32-true``).
- Batches: the first ``1 + batches`` batches of the job's test loader, rendered once and
  held in memory, so neither side pays for data.
- **suite**: a new `EvalModule` (fresh protocol states, predictions.csv streamed to a
  temporary folder, the first ``figure_images`` images kept for cams.png) and a new
  ``pl.Trainer`` per block, ``trainer.test`` over the batches; timed from the end of
  batch 0 to the end of the last batch (``on_test_batch_end``). The per-run fixed cost
  (setup, epoch end: predictions merge, cams.png) is reported beside it.
- **plain**: ``net(images)`` per batch, batch 0 untimed.

Blocks alternate in ABBA order over ``repeats``; each side's figure is its median
batch time over all timed batches (robust to other jobs' bursts), per image; block means
and best blocks are reported beside it. The breakdown: one more pass of ``test_step`` called directly with
timers wrapped around the functions it calls (forward, CAM, classification, the
protocols' upsampling, boxes, score maps, sweep, PxAP histograms, rows, samples).
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from wsol.bench.common import (
    ab_orders,
    compose,
    cuda_available,
    median,
    noise_note,
    now,
    profile_table,
    quiet_lightning,
    row,
    say,
    spread,
    sync,
)

TARGET_RATIO = 1.3


def _identity(x):
    return x


def _diffs(ends: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(ends)]


class Timers:
    """Seconds per label, summed; ``wrap(label, fn)`` times every call of fn."""

    def __init__(self, device: str = "cpu"):
        self.total: dict[str, float] = defaultdict(float)
        self.device = device

    def wrap(self, label: str, fn):
        total, device = self.total, self.device

        def timed(*args, **kwargs):
            sync(device)
            t0 = now()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(device)
                total[label] += now() - t0

        return timed


class _TimedLocalizer:
    """A localizer whose calls are timed (attributes delegate to the real one)."""

    def __init__(self, inner, timers: Timers, label: str):
        self._inner = inner
        self._call = timers.wrap(label, inner.__call__)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)


# top-level labels (their sum plus "other" is the whole test_step) and nested ones
FORWARD, CAM, CLS = "forward (features + head)", "CAM (localizer)", "classification metric"
UPDATE, ROWS, SAMPLES = "protocol update()", "predictions rows (rows() + csv)", "cams.png samples"
NESTED = {
    "cam2016": [
        ("upsample_maps", "upsample to image size"),
        ("cam2016_box", "boxes (threshold + largest component)"),
        ("best_iou", "IoU"),
    ],
    "wsolevaluation": [
        ("make_scoremap", "score maps (cubic 224 + normalise)"),
        ("scoremap_to_uint8", "box sweep"),
        ("box_correct_u8", "box sweep"),
        ("resize_boxes", "box sweep"),
        ("resize_mask", "PxAP histograms"),
        ("pxap_histograms", "PxAP histograms"),
    ],
}
PROTOCOL_MODULES = {
    "cam2016": "wsol.protocols.cam2016",
    "wsolevaluation": "wsol.protocols.wsolevaluation",
}


@contextlib.contextmanager
def instrument(module, timers: Timers) -> Iterator[None]:
    """Wrap timers around what ``module.test_step`` calls; undone on exit."""
    import importlib

    undo: list[tuple[Any, str, Any, bool]] = []

    def patch(obj, attr, label, instance=True):
        had = instance and attr in vars(obj)
        old = getattr(obj, attr)
        setattr(obj, attr, timers.wrap(label, old))
        undo.append((obj, attr, old, had if instance else True))

    try:
        net = module.net
        patch(net, "forward_features", FORWARD)
        patch(net, "forward_head", FORWARD)
        old_loc = module.localizer
        module.localizer = _TimedLocalizer(old_loc, timers, CAM)
        undo.append((module, "localizer", old_loc, True))
        patch(module.classification, "score", CLS)
        patch(module.classification, "update", CLS)
        for name, proto in module.protocols.items():
            patch(proto, "score", f"{name}.score")
            patch(proto, "update", UPDATE)
            patch(proto, "rows", ROWS)
            kind = getattr(type(proto), "name", "")
            if kind in PROTOCOL_MODULES:
                mod = importlib.import_module(PROTOCOL_MODULES[kind])
                for fn, label in NESTED[kind]:
                    if hasattr(mod, fn):
                        patch(mod, fn, f"{kind}: {label}", instance=False)
        if module._writer is not None:
            patch(module._writer, "write", ROWS)
        patch(module, "_keep_samples", SAMPLES)
        yield
    finally:
        for obj, attr, old, had in reversed(undo):
            if had:
                setattr(obj, attr, old)
            else:
                delattr(obj, attr)


def _callbacks(device: str):
    import pytorch_lightning as pl

    class BatchTimer(pl.Callback):
        def __init__(self):
            self.start: list[float] = []
            self.end: list[float] = []

        def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            sync(device)
            self.start.append(now())

        def on_test_batch_end(
            self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
        ):
            sync(device)
            self.end.append(now())

    return BatchTimer()


class _Bench:
    def __init__(self, cfg, device: str, batches: int):
        import pytorch_lightning as pl
        import torch
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        from wsol.pipeline import build_data, build_net, resolve_precision

        self.cfg, self.device = cfg, device
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        resolve_precision(cfg, log_line=False)  # channels_last: auto -> this machine's
        self.dm = build_data(cfg)
        self.net = build_net(cfg)
        if bool(cfg.get("channels_last", False)):
            self.net.to(memory_format=torch.channels_last)
        self.net.to(device).eval()
        self.localizer = instantiate(cfg.localizer)
        self.batches: list[dict] = []
        for b in self.dm.test_dataloader():
            self.batches.append(b)
            if len(self.batches) >= 1 + batches:
                break
        self.images = sum(int(b["image"].shape[0]) for b in self.batches[1:])
        tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
        tcfg.pop("max_epochs", None)
        tcfg["precision"] = "32-true"  # as wsol.pipeline.evaluate_network
        self.trainer_cfg = tcfg

    def module(self, out_dir: str):
        from wsol.evaluation import EvalModule
        from wsol.pipeline import selected_protocols

        return EvalModule(
            self.net,
            self.localizer,
            selected_protocols(self.cfg),
            output_dir=out_dir,
            figure_images=int(self.cfg.get("figure_images", 16)),
            class_names=self.dm.class_names,
        )

    def suite_block(self) -> tuple[list[float], float]:
        """(seconds of each batch 1.., end to end; per-run fixed seconds outside the
        batches)."""
        from hydra.utils import instantiate
        from torch.utils.data import DataLoader

        timer = _callbacks(self.device)
        with tempfile.TemporaryDirectory(prefix="wsol-bench-eval-") as tmp:
            module = self.module(tmp)
            trainer = instantiate(
                self.trainer_cfg,
                logger=False,
                callbacks=[timer],
                inference_mode=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                _convert_="all",
            )
            loader = DataLoader(self.batches, batch_size=None, collate_fn=_identity)
            t0 = now()
            trainer.test(module, dataloaders=loader, verbose=False)
            wall = now() - t0
        in_batches = sum(e - s for s, e in zip(timer.start, timer.end))
        return _diffs(timer.end), wall - in_batches

    def plain_block(self) -> list[float]:
        import torch

        dev = torch.device(self.device)
        ends = []
        with torch.no_grad():
            for b in self.batches:
                self.net(b["image"].to(dev, non_blocking=True))
                sync(self.device)
                ends.append(now())
        return _diffs(ends)

    def breakdown(self, profile: bool = False) -> tuple[dict[str, float], float, str | None]:
        """Seconds per label over batches 1.. of a direct ``test_step`` pass, the total,
        and (with profile) the torch.profiler table of that pass."""
        import torch

        timers = Timers(self.device)
        table = None
        with tempfile.TemporaryDirectory(prefix="wsol-bench-eval-") as tmp:
            module = self.module(tmp)
            module.to(self.device)
            module.on_test_epoch_start()
            dev = torch.device(self.device)

            def to_dev(b):
                return dict(b, image=b["image"].to(dev), label=b["label"].to(dev))

            with torch.no_grad():
                module.test_step(to_dev(self.batches[0]), 0)  # warm-up, cams.png samples
                with instrument(module, timers):
                    prof = None
                    if profile:
                        from torch.profiler import ProfilerActivity
                        from torch.profiler import profile as tprofile

                        acts = [ProfilerActivity.CPU]
                        if self.device.startswith("cuda"):
                            acts.append(ProfilerActivity.CUDA)
                        prof = tprofile(activities=acts)
                        prof.start()
                    total = 0.0
                    for i, b in enumerate(self.batches[1:], start=1):
                        b = to_dev(b)
                        sync(self.device)
                        t0 = now()
                        module.test_step(b, i)
                        sync(self.device)
                        total += now() - t0
                    if prof is not None:
                        prof.stop()
                        table = profile_table(prof)
            if module._writer is not None:
                module._writer.close()
        return dict(timers.total), total, table


def _breakdown_table(parts: dict[str, float], total: float, images: int) -> tuple[str, dict]:
    """Markdown table (ms per image, % of the test_step) and the flat numbers."""
    top = [FORWARD, CAM, CLS]
    proto_names = sorted({k.split(".score")[0] for k in parts if k.endswith(".score")})
    lines = ["| part | ms/image | % of test_step |", "|---|---|---|"]
    flat: dict[str, float] = {}

    def add(label: str, sec: float, indent: bool = False):
        ms = 1000.0 * sec / images
        flat[label] = ms
        name = f"&nbsp;&nbsp;{label}" if indent else label
        lines.append(f"| {name} | {ms:.3f} | {100.0 * sec / total:.1f} |")

    accounted = 0.0
    for label in top:
        add(label, parts.get(label, 0.0))
        accounted += parts.get(label, 0.0)
    for p in proto_names:
        sec = parts.get(f"{p}.score", 0.0)
        add(f"{p}.score()", sec)
        accounted += sec
        nested = {k: v for k, v in parts.items() if k.startswith(f"{p}: ")}
        for k, v in nested.items():
            add(k, v, indent=True)
        add(f"{p}: rest", sec - sum(nested.values()), indent=True)
    for label in (UPDATE, ROWS, SAMPLES):
        add(label, parts.get(label, 0.0))
        accounted += parts.get(label, 0.0)
    add("other (topk, row dicts, batch handling)", total - accounted)
    add("**test_step total**", total)
    return "\n".join(lines), flat


def run(
    overrides: list[str] | None = None,
    batches: int = 3,
    repeats: int = 5,
    device: str = "cpu",
    profile: bool = False,
) -> dict[str, Any]:
    quiet_lightning()
    title = "CAMs and boxes at inference: the suite's evaluation vs a plain forward pass"
    if device.startswith("cuda") and not cuda_available():
        return {
            "figure": "inference",
            "title": title,
            "rows": [row("no GPU (torch.cuda.is_available() is False)", None)],
            "notes": ["no GPU: skipped"],
            "details": "",
        }
    # on a GPU: the paper's 224x224 inputs (the CPU default is the job's own size)
    extra = (
        ["trainer=gpu", "data.dataset.image_size=224", "data.dataset.train_image_size=null"]
        if device.startswith("cuda")
        else []
    )
    with tempfile.TemporaryDirectory(prefix="wsol-bench-cfg-") as tmp:
        cfg = compose([f"paths.output_dir={tmp}", *extra, *(overrides or [])])
        b = _Bench(cfg, device, batches)
        suite: list[list[float]] = []
        plain: list[list[float]] = []
        fixed: list[float] = []
        for r, order in enumerate(ab_orders(repeats)):
            for side in order:
                if side == "suite":
                    secs, fix = b.suite_block()
                    suite.append(secs)
                    fixed.append(fix)
                else:
                    plain.append(b.plain_block())
                blk = (suite if side == "suite" else plain)[-1]
                say(
                    f"  inference repeat {r + 1}/{repeats} {side}: "
                    f"{1000.0 * sum(blk) / b.images:.2f} ms/image (block mean)"
                )
        parts, total, prof_table = b.breakdown(profile)
    per_batch = b.images / max(1, len(b.batches) - 1)
    pooled_s = [x for blk in suite for x in blk]
    pooled_p = [x for blk in plain for x in blk]
    s_ms = 1000.0 * median(pooled_s) / per_batch
    p_ms = 1000.0 * median(pooled_p) / per_batch
    ratio = s_ms / p_ms
    block_s = [1000.0 * sum(blk) / b.images for blk in suite]
    block_p = [1000.0 * sum(blk) / b.images for blk in plain]
    n = b.images
    table, flat = _breakdown_table(parts, total, n)
    from wsol.pipeline import selected_protocols

    chosen = selected_protocols(cfg)
    protocols = list(chosen)
    n_thr = {k: len(p.thresholds) for k, p in chosen.items() if hasattr(p, "thresholds")}
    size = int(cfg.data.get("eval_input_size") or cfg.data.input_size)  # the test images
    bs = int(b.dm.eval_batch_size)
    rows = [
        row(
            f"eval {cfg.model.name} {size}px bs{bs} [{', '.join(protocols)}] (ms/image)"
            + noise_note(block_p, block_s),
            s_ms,
            p_ms,
            ratio,
            unit="ms/image",
            target=f"ratio <= {TARGET_RATIO}",
            met=ratio <= TARGET_RATIO,
        ),
        row(
            "eval throughput, suite vs plain forward (images/s, 6 CAMs each; no target)",
            1000.0 / s_ms,
            1000.0 / p_ms,
            p_ms / s_ms,
            unit="img/s",
        ),
    ]
    details = "\n".join(
        [
            f"{n} images in {len(b.batches) - 1} batches of {bs} (+1 warm-up batch), "
            f"{size}x{size}, {cfg.localizer.get('_target_', '?').rsplit('.', 1)[-1]} maps for "
            f"[GT, top-5], protocols {', '.join(protocols)}"
            + "".join(f" ({k} at {v} thresholds)" for k, v in n_thr.items())
            + ".",
            "",
            "| block (ABBA order) | plain ms/image | suite ms/image | suite/plain |",
            "|---|---|---|---|",
            *(
                f"| {i + 1} | {p:.2f} | {s:.2f} | {s / p:.3f} |"
                for i, (p, s) in enumerate(zip(block_p, block_s))
            ),
            "",
            f"The figure is the median batch time over all timed batches of a side, per image: "
            f"plain {p_ms:.2f}, suite {s_ms:.2f} ms/image, ratio {ratio:.3f}. Best block: plain "
            f"{min(block_p):.2f}, suite {min(block_s):.2f} ms/image, ratio "
            f"{min(block_s) / min(block_p):.3f}; blocks ranged {spread(block_p)} (plain), "
            f"{spread(block_s)} (suite). Per-run fixed cost of "
            f"trainer.test outside the batches (setup, epoch end: predictions merge, cams.png): "
            f"{median(fixed):.2f} s.",
            "",
            "Where a test_step's time goes (direct test_step calls with timers, batches 1..):",
            "",
            table,
        ]
    )
    if prof_table:
        details += (
            "\n\ntorch.profiler over the same pass, top ops by self CPU time:\n\n" + prof_table
        )
    return {
        "figure": "inference",
        "title": title,
        "rows": rows,
        "notes": [
            "suite = EvalModule.test_step in trainer.test (fp32, no_grad) with the config's "
            "localizer and protocols, predictions.csv streamed; plain = net(images) on the "
            "same in-memory batches; ABBA-alternated blocks; ms/image = median batch time "
            "over all timed batches of a side / batch size",
        ],
        "details": details,
        "breakdown_ms": flat,
    }
