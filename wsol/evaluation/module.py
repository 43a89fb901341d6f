"""`EvalModule`: localization evaluation of a trained network in Lightning's test loop.

For every test batch: one forward pass gives the conv maps and the logits; the classes
to localize are ``[ground truth, top-1 .. top-5]``; the localizer turns them into raw
maps; every selected protocol scores the maps (its torchmetrics state sums counts, so
DDP processes add up to the numbers of one process); per-image rows stream to
``predictions.csv``; the first ``figure_images`` images are kept for ``cams.png``.
Nothing that grows with the data set is held in memory.

A network whose head has no class scores (``head.classifies`` False: method=fsl's
foreground map) is scored as a baseline is: the ground-truth class in both columns, no
classification metrics and no metric or column of the top-k guesses (they would be
numbers about classes the network never predicted).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from wsol.evaluation.scoring import image_rows, is_guess, score_batch
from wsol.localize.base import Localizer
from wsol.protocols.classification import ClassificationMetric
from wsol.protocols.metric import merged_curves
from wsol.report.figures import cam_grid, cam_sample
from wsol.report.predictions import PredictionWriter

log = logging.getLogger(__name__)


class EvalModule(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        localizer: Localizer,
        protocols: Mapping[str, nn.Module],
        output_dir: str | Path | None = None,
        topk: int = 5,
        figure_images: int = 16,
        class_names: list[str] | None = None,
        predictions_name: str = "predictions.csv",
    ):
        super().__init__()
        self.net = net
        self.localizer = localizer
        self.localize = bool(protocols) and localizer.can_localize(net)
        if protocols and not self.localize:
            log.warning(
                "model %s has no CAM and localizer=cam: reporting classification metrics only "
                "(use localizer=gradcam or localizer=backprop for its localization)",
                getattr(net, "name", "?"),
            )
        self.protocols = nn.ModuleDict(dict(protocols) if self.localize else {})
        self.classifies = bool(getattr(getattr(net, "head", None), "classifies", True))
        self.classification = ClassificationMetric()
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.topk = int(topk)
        self.figure_images = int(figure_images)
        self.class_names = class_names
        self.predictions_name = predictions_name
        self._writer: PredictionWriter | None = None
        self._samples: list[dict] = []
        self.results: dict[str, float] = {}

    # ---- the loop ----------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self.net.eval()
        self._samples = []
        if self.output_dir is not None:
            self._writer = PredictionWriter(
                self.output_dir / self.predictions_name, rank=self.global_rank
            )

    def test_step(self, batch: dict, batch_idx: int) -> None:
        images, labels = batch["image"], batch["label"]
        needs_grad = self.localize and self.localizer.needs_grad
        with torch.set_grad_enabled(needs_grad):
            with torch.no_grad():
                features = self.net.forward_features(images)
                logits = self.net.forward_head(features)
            if self.classifies:
                k = min(self.topk, logits.shape[1])
                classes = torch.cat([labels[:, None], logits.topk(k, dim=1).indices], dim=1)
            else:  # no guesses: the ground-truth class in both columns (the baselines' way)
                classes = torch.stack([labels, labels], dim=1)
            maps = (
                self.localizer(self.net, images, features, classes).detach()
                if self.localize
                else None
            )
        if self.classifies:
            self.classification.update(self.classification.score(logits.detach(), labels))
        rows = (
            score_batch(self.protocols, maps, classes, batch, guesses=self.classifies)
            if maps is not None
            else image_rows(batch, classes if self.classifies else None)
        )
        if self._writer is not None:
            self._writer.write(rows)
        if maps is not None and len(self._samples) < self.figure_images:
            self._keep_samples(batch, classes, maps)

    def _keep_samples(self, batch: dict, classes: torch.Tensor, maps: torch.Tensor) -> None:
        mean, std = getattr(self.net, "mean", (0.0,) * 3), getattr(self.net, "std", (1.0,) * 3)
        for b in range(classes.shape[0]):
            if len(self._samples) >= self.figure_images:
                return
            sample = cam_sample(batch["image"][b], maps[b, 1], batch["size"][b], mean, std)
            pred, label = int(classes[b, 1]), int(batch["label"][b])
            mark = "ok" if pred == label else f"gt {self._class_name(label)}"
            caption = f"{self._class_name(pred)} ({mark})" if self.classifies else "foreground"
            self._samples.append(
                {
                    "image": sample["image"],
                    "cam": sample["cam"],
                    "gt_boxes": batch["boxes"][b].numpy(),
                    "pred_box": sample["box"],
                    "caption": caption,
                }
            )

    def _class_name(self, c: int) -> str:
        return self.class_names[c] if self.class_names else str(c)

    def on_test_epoch_end(self) -> None:
        if self._writer is not None:
            self._writer.close()
        results: dict[str, float] = {}
        if self.classifies:
            results.update(self.classification.compute())
        for protocol in self.protocols.values():
            results.update(protocol.compute())
        if not self.classifies:
            results = {k: v for k, v in results.items() if not is_guess(k)}
        self.results = {k: float(v) for k, v in results.items()}
        if self.trainer is not None and self.trainer.world_size > 1:
            self.trainer.strategy.barrier("wsol-eval-end")
        if self.global_rank == 0 and self.output_dir is not None:
            world = self.trainer.world_size if self.trainer is not None else 1
            PredictionWriter.merge(self.output_dir / self.predictions_name, world)
            if self._samples:
                cam_grid(
                    self._samples,
                    self.output_dir / "cams.png",
                    title=f"{getattr(self.net, 'name', '')} CAMs",
                )

    def discard(self) -> None:
        """After a failed evaluation: close and remove this process's part file of
        predictions.csv (the previous predictions.csv, if any, stays as it was)."""
        if self._writer is not None:
            self._writer.close()
            self._writer.part.unlink(missing_ok=True)
            self._writer = None

    def curves(self):
        """The per-threshold curves of every protocol that has them, side by side."""
        return merged_curves(self.protocols.values())
