"""`ClassifierModule`: the LightningModule that trains a network with image labels only.

It owns the loss (cross-entropy, or the training method's: ``method``, a
`wsol.methods.Method`, also changes the training images and names the batch entry its
target comes from), the optimiser and schedule (Hydra ``_partial_``s from
the ``optim`` group), and the classification metrics logged each epoch (none for a head
whose ``classifies`` is False: method=fsl's foreground head has no class scores). Localization
scoring is not here: it lives in `wsol.evaluation.EvalModule`, which may import the
protocols (this package may not).

Layers that the surgery added (``net.is_new_parameter``) train at ``net.head_lr_mult``
times the base rate when the rest of the network was loaded from pretrained weights,
as the CAM paper and wsolevaluation do; from scratch every layer trains at the base rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from wsol.errors import WSOLError

log = logging.getLogger(__name__)


class ClassifierModule(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        model_config: dict | None = None,
        channels_last: bool = False,
        method: Any = None,
    ):
        super().__init__()
        self.net = net
        # the training method (wsol.methods.Method: inputs and loss); None: plain CAM
        self.method = method
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.label_smoothing = float(label_smoothing)
        self.channels_last = bool(channels_last)
        # plain types only: checkpoints must load with torch.load(weights_only=True)
        self.save_hyperparameters(
            {
                "model": dict(model_config or {}),
                "label_smoothing": self.label_smoothing,
                "method": method.config() if method is not None else {"name": "cam"},
            }
        )

    def setup(self, stage: str) -> None:
        if self.channels_last:  # NHWC: oneDNN's fast path for convolutions on the CPU
            self.net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: dict, stage: str) -> torch.Tensor | None:
        # a head without class scores (method=fsl's foreground map): its own loss in
        # training, and no loss or accuracy against labels anywhere
        classifies = bool(getattr(getattr(self.net, "head", None), "classifies", True))
        if not classifies and stage != "train":
            return None
        x = batch["image"]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = batch["label"]
        if stage == "train" and self.method is not None:
            key = getattr(self.method, "target", "label")
            if key not in batch:
                raise WSOLError(
                    f"method={self.method.name} trains on the batch's {key!r}, which this data "
                    f"module does not deliver (set data.train_targets={key})"
                )
            x, target = self.method.inputs(x, batch[key])
            logits = self.net(x).float()
            loss = self.method.loss(logits, target, self.label_smoothing)
        else:
            logits = self.net(x).float()
            loss = F.cross_entropy(
                logits, y, label_smoothing=self.label_smoothing if stage == "train" else 0.0
            )
        n = y.numel()
        if not classifies:
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
            return loss
        acc = (logits.argmax(1) == y).float().mean()
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=n,
            sync_dist=not on_step,
        )
        self.log(
            f"{stage}/acc",
            acc,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=n,
            sync_dist=True,
        )
        if stage != "train":
            k = min(5, logits.shape[1])
            acc5 = (logits.topk(k, 1).indices == y[:, None]).any(1).float().mean()
            self.log(
                f"{stage}/acc5", acc5, on_step=False, on_epoch=True, batch_size=n, sync_dist=True
            )
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_train_epoch_end(self) -> None:
        """One log line per epoch: loss and accuracy, train and val."""
        m = self.trainer.callback_metrics
        parts = [
            f"{k} {float(m[k]):.4f}"
            for k in ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/acc5")
            if k in m
        ]
        if parts and self.global_rank == 0:
            log.info(
                "epoch %d/%d: %s", self.current_epoch + 1, self.trainer.max_epochs, ", ".join(parts)
            )

    def param_groups(self, base_lr: float) -> list[dict]:
        """Base-rate and new-layer groups (new layers at ``head_lr_mult`` x when pretrained)."""
        mult = (
            float(getattr(self.net, "head_lr_mult", 1.0))
            if getattr(self.net, "pretrained", False)
            else 1.0
        )
        old, new = [], []
        for name, p in self.net.named_parameters():
            if p.requires_grad:
                (new if self.net.is_new_parameter(name) else old).append(p)
        groups = [
            g
            for g in ({"params": old, "lr": base_lr}, {"params": new, "lr": base_lr * mult})
            if g["params"]
        ]
        if mult != 1.0:
            log.info("new layers train at %g x the base learning rate (%d tensors)", mult, len(new))
        return groups

    def configure_optimizers(self):
        base_lr = (
            self.optimizer_factory.keywords.get("lr", 0.01)
            if hasattr(self.optimizer_factory, "keywords")
            else 0.01
        )
        opt = self.optimizer_factory(params=self.param_groups(base_lr))
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(optimizer=opt)
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": sched, "interval": self.scheduler_interval},
        }


# ---- reproducible across a crash and resume=true -----------------------------------------
def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of torch's generator for one training step of one process."""
    import numpy as np

    ss = np.random.SeedSequence([int(seed) % 2**32, int(rank), int(step)])
    return int(ss.generate_state(1, np.uint64)[0] >> 1)


class StepSeed(pl.Callback):
    """Seeds torch's generator before every training step from ``(seed, rank, global
    step)``: the network's own randomness (dropout) is then the same whether the run went
    straight through or was resumed from a checkpoint at any step, whatever drew random
    numbers in between (validation, loader workers, a restart). The images' augmentation
    is seeded per image by `wsol.data.datamodule.SeededDataset`."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        torch.manual_seed(step_seed(self.seed, trainer.global_rank, trainer.global_step))


class CheckpointOnSigterm(pl.Callback):
    """On SIGTERM (a scheduler's kill, ``kill PID``) Lightning stops after the current
    batch and raises `SIGTERMException`; this saves a checkpoint of that moment to
    ``path`` (``checkpoints/last.ckpt``), so ``resume=true`` loses at most the batch in
    flight. Not after an epoch's last batch: Lightning misreads a checkpoint of that
    moment on restart (it skips the next epoch), so the epoch-end checkpoint that
    `ModelCheckpoint` wrote stays. SIGKILL cannot be caught: then the last epoch-end
    checkpoint is what resumes."""

    def __init__(self, path):
        self.path = str(path)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if done == 0 or done >= trainer.num_training_batches:
            log.warning("SIGTERM at an epoch's end: resume=true continues from its checkpoint")
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        log.warning("SIGTERM: saved the training state to %s (resume=true continues)", self.path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through `wsol.io.atomic_open` (a temporary file in the same
    folder, fsync, rename): a crash mid-save leaves the previous checkpoint whole.
    (Lightning's own save stages the file in the system's temporary folder and moves
    it, which is a non-atomic copy when that is another file system.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        from wsol.io import atomic_open

        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)
