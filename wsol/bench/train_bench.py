"""Figure 2, training: images per second of the suite's Lightning training against a
plain PyTorch loop, side by side in one process.

Both sides train the *same* network object (built by `wsol.pipeline.build_net` from the
composed config) on the *same* batches (`WSOLDataModule.train_dataloader`, i.e. the
default job's loader with its worker, or pre-rendered batches in memory), with the same
batch size, torch threads, global torch flags (``trainer.deterministic``), autocast
(from ``trainer.precision``: bf16 on the CPU), memory format (``channels_last``), and
the optimiser and schedule that `ClassifierModule.configure_optimizers` makes.

- **suite**: `ClassifierModule` from `wsol.pipeline.build_classifier` and the
  ``pl.Trainer`` of ``cfg.trainer`` with the config's logger (CSV), its
  ``log_every_n_steps``, the module's ``self.log`` calls and Lightning's loop, hooks and
  precision plugin. Progress bar off. Left out, because they run once per epoch and not
  per step: validation (``limit_val_batches=0``) and the epoch-end checkpoint.
- **plain**: ``for batch in loader: autocast(forward, cross-entropy); zero_grad;
  backward; step; scheduler.step()``.

Each block starts a new loader (and Lightning a new ``fit``), runs ``warmup`` steps, then
``steps`` timed steps: the time from the end of step ``warmup`` to the end of the last
step (Lightning: ``on_train_batch_end`` timestamps). Blocks alternate plain/suite in ABBA
order over ``repeats`` (after one untimed block of each side); each side's images/s is
the batch size over the median duration of all its timed steps (a burst of another job
on a shared machine hits a few steps, not the median); the block means and the best
block of each side are reported beside it.
"""

from __future__ import annotations

import tempfile
from typing import Any

from wsol.bench.common import (
    ab_orders,
    autocast_for,
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

TARGET_RATIO = 0.95
GPU_NETWORKS = ("googlenet_gap", "vgg16_gap", "resnet50_gap", "inceptionv3_gap", "alexnet_gap")


def _identity(x):
    return x


def _timer_callback(device: str):
    import pytorch_lightning as pl

    class StepTimer(pl.Callback):
        """perf_counter at the end of every training batch."""

        def __init__(self):
            self.times: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            sync(device)
            self.times.append(now())

    return StepTimer()


def _profile_callback(prof, start: int, stop: int):
    import pytorch_lightning as pl

    class ProfileWindow(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == start:
                prof.start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == stop:
                prof.stop()

    return ProfileWindow()


class _Bench:
    """Everything both sides share, built once from the config."""

    def __init__(self, cfg, device: str, data_source: str):
        import pytorch_lightning as pl
        import torch
        from torch.utils.data import DataLoader

        from wsol.pipeline import build_classifier, build_data, build_net, resolve_precision

        self.cfg, self.device = cfg, device
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        resolve_precision(cfg, log_line=False)  # auto -> what this machine trains with
        torch.use_deterministic_algorithms(bool(cfg.trainer.get("deterministic", False)))
        if device.startswith("cuda"):
            torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark", False))
        self.dm = build_data(cfg)
        self.net = build_net(cfg)
        self.steps_per_epoch = len(self._fresh_train_loader())
        self.module = build_classifier(cfg, self.net, self.steps_per_epoch)
        self.batch_size = int(self.dm.batch_size)
        self.channels_last = bool(cfg.get("channels_last", False))
        self.label_smoothing = float(cfg.optim.get("label_smoothing", 0.0))
        self.precision = cfg.trainer.get("precision", "32-true")
        self.data_source = data_source
        self._memory: list[dict] | None = None
        self._DataLoader = DataLoader

    def _fresh_train_loader(self):
        """The job's train loader as a fresh run's first epoch makes it (a datamodule that
        a finished fit left attached to its trainer would start where that fit stopped)."""
        self.dm.trainer = None
        return self.dm.train_dataloader()

    def memory_batches(self, n: int) -> list[dict]:
        """n batches (references to at most one epoch of distinct rendered batches)."""
        if self._memory is None:
            loader = self._fresh_train_loader()
            distinct = []
            for i, b in enumerate(loader):
                distinct.append(b)
                if i + 1 >= min(n, self.steps_per_epoch):
                    break
            self._memory = distinct
        return [self._memory[i % len(self._memory)] for i in range(n)]

    def loader(self, n: int):
        if self.data_source == "memory":
            return self._DataLoader(
                self.memory_batches(n), batch_size=None, shuffle=False, collate_fn=_identity
            )
        return self._fresh_train_loader()

    # ---- suite: the real ClassifierModule + pl.Trainer --------------------------------
    def suite_block(self, n: int, extra_callbacks=()) -> tuple[list[float], dict]:
        import torch
        from hydra.utils import instantiate

        timer = _timer_callback(self.device)
        # the logger writes under paths.output_dir (a temporary folder, see run())
        logger = instantiate(self.cfg.logger) if self.cfg.get("logger") else False
        trainer = instantiate(
            self.cfg.trainer,
            logger=logger,
            callbacks=[timer, *extra_callbacks],
            enable_progress_bar=False,
            enable_checkpointing=False,
            limit_val_batches=0,
            max_steps=n,
        )
        info = {"threads": torch.get_num_threads()}
        if self.data_source == "memory":
            trainer.fit(self.module, train_dataloaders=self.loader(n))
        else:
            trainer.fit(self.module, datamodule=self.dm)
        return timer.times, info

    # ---- plain: the same model, batches, optimiser, autocast ---------------------------
    def plain_block(self, n: int, prof=None, prof_window=(0, -1)) -> tuple[list[float], dict]:
        import torch
        import torch.nn.functional as F

        dev = torch.device(self.device)
        net = self.net.to(dev)
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        net.train()
        conf = self.module.configure_optimizers()
        if isinstance(conf, dict):
            opt = conf["optimizer"]
            sched = conf["lr_scheduler"]["scheduler"]
            per_step = conf["lr_scheduler"].get("interval", "epoch") == "step"
        else:
            opt, sched, per_step = conf, None, False
        autocast, scaler = autocast_for(self.precision, self.device)
        times: list[float] = []
        it = iter(self.loader(n))
        try:
            for i in range(n):
                if prof is not None and i == prof_window[0]:
                    prof.start()
                batch = next(it)
                x = batch["image"].to(dev, non_blocking=True)
                y = batch["label"].to(dev, non_blocking=True)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast():
                    logits = net(x).float()
                    loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                if sched is not None and per_step:
                    sched.step()
                sync(self.device)
                times.append(now())
                if prof is not None and i == prof_window[1]:
                    prof.stop()
        finally:
            del it  # shuts the loader's worker down
        return times, {"threads": torch.get_num_threads()}


def _step_seconds(times: list[float], warmup: int, steps: int) -> list[float]:
    """Durations of the timed steps (end of step i-1 to end of step i, i >= warmup)."""
    return [times[i] - times[i - 1] for i in range(warmup, warmup + steps)]


def measure(
    cfg, steps: int, warmup: int, repeats: int, device: str, data_source: str, profile: bool
) -> dict[str, Any]:
    """Time one network: per-step durations of both sides over ABBA-ordered blocks."""
    b = _Bench(cfg, device, data_source)
    warmup = max(1, int(warmup))
    limit = b.steps_per_epoch if data_source == "loader" else 10**9
    if warmup + steps > limit:  # stay inside one epoch: no epoch-end work in the window
        steps = max(1, limit - warmup)
        say(f"  train: {limit} steps per epoch: timing {steps} steps after {warmup} warm-up")
    n = warmup + steps
    # one untimed block of each side first: one-off costs (oneDNN primitive creation,
    # Lightning's lazy imports) must not land on whichever side happens to run first
    b.plain_block(warmup + 1)
    b.suite_block(warmup + 1)
    durs: dict[str, list[list[float]]] = {"plain": [], "suite": []}
    threads: dict[str, Any] = {}
    for r, order in enumerate(ab_orders(repeats)):
        for side in order:
            times, info = b.suite_block(n) if side == "suite" else b.plain_block(n)
            durs[side].append(_step_seconds(times, warmup, steps))
            threads[side] = info
            say(
                f"  train {cfg.model.name} repeat {r + 1}/{repeats} {side}: "
                f"{b.batch_size * steps / sum(durs[side][-1]):.1f} img/s (block mean)"
            )
    bs = b.batch_size
    pooled = {k: [d for blk in v for d in blk] for k, v in durs.items()}
    block_rate = {k: [bs * len(blk) / sum(blk) for blk in v] for k, v in durs.items()}
    rate = {k: bs / median(v) for k, v in pooled.items()}
    out: dict[str, Any] = {
        "network": str(cfg.model.name),
        "input_size": int(cfg.data.input_size),
        "batch_size": bs,
        "steps": steps,
        "warmup": warmup,
        "repeats": repeats,
        # the figure: images/s at the median step time of all timed steps of a side
        "suite_rate": rate["suite"],
        "plain_rate": rate["plain"],
        "ratio": rate["suite"] / rate["plain"],
        # per block (mean over its steps), and the best block of each side
        "suite_blocks": block_rate["suite"],
        "plain_blocks": block_rate["plain"],
        "best_ratio": max(block_rate["suite"]) / max(block_rate["plain"]),
        "step_ms": {k: [1000.0 * d for d in v] for k, v in pooled.items()},
        "threads": threads,
        "precision": str(b.precision),
        "channels_last": b.channels_last,
        "deterministic": bool(cfg.trainer.get("deterministic", False)),
        "num_workers": int(b.dm.num_workers),
        "data_source": data_source,
        "logger": str(cfg.logger.get("_target_", "none")) if cfg.get("logger") else "none",
        "log_every_n_steps": int(cfg.trainer.get("log_every_n_steps", 50)),
    }
    if profile:
        out["profile"] = _profile(b, warmup, min(steps, 5))
    return out


def _profile(b: _Bench, warmup: int, steps: int) -> dict[str, str]:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if b.device.startswith("cuda"):
        acts.append(ProfilerActivity.CUDA)
    n = warmup + steps
    prof_plain = profile(activities=acts)
    b.plain_block(n, prof=prof_plain, prof_window=(warmup, n - 1))
    prof_suite = profile(activities=acts)
    b.suite_block(n, extra_callbacks=[_profile_callback(prof_suite, warmup, n - 1)])
    return {"plain": profile_table(prof_plain), "suite": profile_table(prof_suite)}


def _quartiles(xs: list[float]) -> str:
    import statistics

    if len(xs) < 2:
        return f"{xs[0]:.0f}" if xs else "-"
    q = statistics.quantiles(xs, n=4)
    return f"{q[0]:.0f} / {statistics.median(xs):.0f} / {q[2]:.0f}"


def _details(res: dict[str, Any]) -> str:
    su, pl_ = res["suite_rate"], res["plain_rate"]
    overhead_ms = 1000.0 * res["batch_size"] * (1.0 / su - 1.0 / pl_)
    head = (
        f"**{res['network']}** ({res['input_size']}x{res['input_size']}, batch "
        f"{res['batch_size']}, {res['repeats']} repeats x {res['steps']} timed steps per side "
        f"after {res['warmup']} warm-up steps per block, data: {res['data_source']}"
        + (f" with {res['num_workers']} worker(s)" if res["data_source"] == "loader" else "")
        + f", torch threads {res['threads'].get('plain', {}).get('threads')})"
    )
    return "\n".join(
        [
            head,
            "",
            "| block (ABBA order) | plain img/s | suite img/s | suite/plain |",
            "|---|---|---|---|",
            *(
                f"| {i + 1} | {p:.2f} | {s:.2f} | {s / p:.3f} |"
                for i, (p, s) in enumerate(zip(res["plain_blocks"], res["suite_blocks"]))
            ),
            "",
            f"Step time quartiles (ms): plain {_quartiles(res['step_ms']['plain'])}, suite "
            f"{_quartiles(res['step_ms']['suite'])}. The figure is batch / median step time: "
            f"plain {pl_:.2f}, suite {su:.2f} img/s, ratio {res['ratio']:.3f} (the suite's "
            f"extra time per step {overhead_ms:+.1f} ms). Best block of each side: plain "
            f"{max(res['plain_blocks']):.2f}, suite {max(res['suite_blocks']):.2f} img/s, ratio "
            f"{res['best_ratio']:.3f}; blocks ranged {spread(res['plain_blocks'])} (plain) and "
            f"{spread(res['suite_blocks'])} (suite).",
        ]
    )


def run(
    overrides: list[str] | None = None,
    steps: int = 10,
    warmup: int = 3,
    repeats: int = 5,
    device: str = "cpu",
    networks: list[str] | None = None,
    data_source: str | None = None,
    profile: bool = False,
) -> dict[str, Any]:
    quiet_lightning()
    overrides = list(overrides or [])
    title = "Training: the suite's Lightning training vs a plain PyTorch loop (images/s)"
    if device.startswith("cuda") and not cuda_available():
        return {
            "figure": "train",
            "title": title,
            "rows": [row("no GPU (torch.cuda.is_available() is False)", None)],
            "notes": ["no GPU: skipped"],
            "details": "",
        }
    if data_source is None:
        data_source = "memory" if device.startswith("cuda") else "loader"
    extra = []
    if device.startswith("cuda"):
        extra = ["trainer=gpu", "data.dataset.image_size=224", "data.dataset.train_image_size=null"]
        nets = list(networks or GPU_NETWORKS)
    else:
        nets = list(networks or [None])
    rows, details, results = [], [], []
    with tempfile.TemporaryDirectory(prefix="wsol-bench-cfg-") as tmp:
        for name in nets:
            ov = [f"paths.output_dir={tmp}", *extra, *overrides]
            if name is not None:
                ov.append(f"model={name}")
            try:
                cfg = compose(ov)
                res = measure(cfg, steps, warmup, repeats, device, data_source, profile)
            except Exception as e:  # one network's failure is reported, not fatal
                if len(nets) == 1:
                    raise
                rows.append(row(f"{name}: error {type(e).__name__}: {e}"[:120], None))
                continue
            results.append(res)
            su, pl_ = res["suite_rate"], res["plain_rate"]
            rows.append(
                row(
                    f"train {res['network']} {res['input_size']}px bs{res['batch_size']} "
                    f"{res['precision']}{' NHWC' if res['channels_last'] else ''} (img/s)"
                    + noise_note(res["plain_blocks"], res["suite_blocks"]),
                    su,
                    pl_,
                    res["ratio"],
                    unit="img/s",
                    target=f"ratio >= {TARGET_RATIO}",
                    met=res["ratio"] >= TARGET_RATIO,
                )
            )
            details.append(_details(res))
            if "profile" in res:
                for side in ("plain", "suite"):
                    details.append(
                        f"torch.profiler, {side} side, {res['network']}, top ops by self CPU time "
                        f"(steps after warm-up):\n\n{res['profile'][side]}"
                    )
    first = results[0] if results else {}
    notes = [
        "suite = ClassifierModule + pl.Trainer from the config (precision "
        f"{first.get('precision')}, channels_last {first.get('channels_last')}, deterministic "
        f"{first.get('deterministic')}, logger {first.get('logger')} every "
        f"{first.get('log_every_n_steps')} steps, the module's self.log calls); progress bar, "
        "per-epoch validation and the epoch-end checkpoint are outside the timed steps",
        "plain = the same network object, loader, optimiser + schedule, autocast and memory "
        "format in a bare loop; ABBA-alternated blocks after one untimed block of each; "
        "img/s = batch / median step time over all timed steps of a side (robust to "
        "other jobs' bursts; the block means and best blocks are in the details)",
    ]
    return {
        "figure": "train",
        "title": title,
        "rows": rows,
        "notes": notes,
        "details": "\n\n".join(details),
        "train_rate": first["suite_rate"] if first else None,
        "arithmetic": f"{first.get('precision')}{', NHWC' if first.get('channels_last') else ''}"
        if first
        else None,
        "results": results,
    }
