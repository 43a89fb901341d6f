"""`ClassifierModule`: the LightningModule that trains a network with image labels only.

It owns the loss (cross-entropy), the optimiser and schedule (Hydra ``_partial_``s from
the ``optim`` group), and the classification metrics logged each epoch. Localization
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
from torch import nn

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
    ):
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.label_smoothing = float(label_smoothing)
        # plain types only: checkpoints must load with torch.load(weights_only=True)
        self.save_hyperparameters(
            {"model": dict(model_config or {}), "label_smoothing": self.label_smoothing}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self.net(batch["image"])
        y = batch["label"]
        loss = F.cross_entropy(
            logits, y, label_smoothing=self.label_smoothing if stage == "train" else 0.0
        )
        n = y.numel()
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
