"""The modes of ``python -m wsol.evaluate`` (described in one place: docs/EVALUATE.md).

`evaluate` picks the mode from the config (`_mode`): 1. ``ckpt=`` a checkpoint on a
data set (`_evaluate_checkpoint`: the main job's evaluation of the rebuilt network);
2. ``scoremaps=`` score maps on disk (`_evaluate_scoremaps`, maps read by
`wsol.evaluation.scoremaps`); 3. ``export_scoremaps=`` with mode 1 or 4
(`wsol.evaluation.export`); 4. a baseline without a network (`_evaluate_baseline`).
Modes 2 and 4 stream batches through the shared scoring step
(`wsol.evaluation.scoring`) to ``predictions.csv``; every mode ends with `wsol.job.finish`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

import wsol  # noqa: F401  (registers the config resolvers)
from wsol.data.record import collate
from wsol.errors import WSOLError
from wsol.evaluation.checkpoint import (
    adopt_model,
    build_network,
    check_model_overrides,
    read_checkpoint,
)
from wsol.evaluation.export import ScoremapExport, export_resize
from wsol.evaluation.scoremaps import MetadataAnnotations, ScoremapDataset, load_scoremap
from wsol.evaluation.scoring import add_results, image_rows, is_guess, score_batch
from wsol.io import check_writable, write_csv, write_text
from wsol.job import (
    finish,
    rank,
    resolve_output_dir,
    resolve_precision,
    run_identity,
    selected_protocols,
)
from wsol.protocols.metric import ProtocolMetric, merged_curves
from wsol.report.predictions import PredictionWriter

log = logging.getLogger(__name__)

__all__ = [
    "MetadataAnnotations",
    "ScoremapDataset",
    "ScoremapExport",
    "evaluate",
    "load_scoremap",
    "read_checkpoint",  # re-exported from wsol.evaluation.checkpoint
]


# ---- mode 1: a checkpoint ----------------------------------------------------------------
def _evaluate_checkpoint(
    cfg: DictConfig, out: Path, localizer, export: Path | None, overrides: list[str]
) -> dict:
    path = Path(str(cfg.ckpt)).expanduser()
    what = f"ckpt={path}"
    protocols = selected_protocols(cfg)  # its settings checked before the checkpoint is read
    model, sd = read_checkpoint(path)
    check_model_overrides(cfg, overrides, model, what)
    adopt_model(cfg, model)
    dm = instantiate(cfg.data)
    n_data, n_ckpt = int(dm.num_classes), int(model["num_classes"])
    if n_data != n_ckpt:
        raise WSOLError(
            f"{what}: the checkpoint's {model['name']} has {n_ckpt} classes but data "
            f"{cfg.data.get('name', 'data')} has {n_data}; evaluate it on the data set it was trained on"
        )
    net = build_network(model, sd, what)
    if resolve_precision(cfg, log_line=False).channels_last:  # as the main job evaluates
        net.to(memory_format=torch.channels_last)
    if export is not None:
        if not localizer.can_localize(net):
            raise WSOLError(
                f"{what}: {model['name']} has no CAM, so localizer=cam makes no maps to export; "
                "set localizer=gradcam or localizer=backprop"
            )
        protocols["export_scoremaps"] = ScoremapExport(export, export_resize(cfg, protocols))
    from wsol.pipeline import evaluate_network  # Lightning: only this mode needs it

    metrics = evaluate_network(cfg, net, dm, localizer, protocols, out, logger=None)
    metrics.update(run_identity(cfg, localizer.name))
    metrics.update(mode="checkpoint", ckpt=str(path))
    if export is not None:
        metrics["exported_scoremaps"] = int(protocols["export_scoremaps"].written)
    return metrics


# ---- mode 2: score maps on disk ----------------------------------------------------------
def _evaluate_scoremaps(cfg: DictConfig, out: Path) -> dict:
    protocols = selected_protocols(cfg)
    others = [k for k in protocols if k != "wsolevaluation"]
    if others or not protocols:
        raise WSOLError(
            "scoremaps= scores pre-made 224x224 score maps with protocol=wsolevaluation only "
            f"(selected: {', '.join(protocols) or 'none'}; {', '.join(others) or 'the others'} "
            "need each image's raw map); set protocol=wsolevaluation"
        )
    metric = protocols["wsolevaluation"]
    annotations = MetadataAnnotations(cfg.metadata, cfg.get("masks"))
    ds = ScoremapDataset(annotations, cfg.scoremaps, metric.resize)

    def score(batch: dict) -> list[dict]:
        result = metric.score_scoremaps(batch["scoremap"], batch, checked=True)
        rows = image_rows(batch)
        add_results(protocols, {"wsolevaluation": result}, rows)
        return rows

    n = _stream(_loader(ds, cfg), score, out)
    metrics = _results(protocols)
    metrics.update(
        mode="scoremaps",
        scoremaps=str(ds.folder),
        metadata=str(annotations.folder),
        images=n,
    )
    _finish(out, protocols)
    return metrics


# ---- mode 4: baselines without a network -------------------------------------------------
class AnnotationView(Dataset):
    """The records of a reader without their images (readers built with
    ``load_images=False`` have none; the synthetic data's are dropped)."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.ds[index])
        record.pop("image", None)
        return record


def _annotation_dataset(cfg: DictConfig) -> Dataset:
    """The test split of ``cfg.data`` read annotation-only where the reader can."""
    node = OmegaConf.create(OmegaConf.to_container(cfg.data.dataset, resolve=False))
    target = get_object(str(node._target_))
    params = inspect.signature(target).parameters
    kwargs: dict[str, Any] = {}
    if "load_images" in params:
        kwargs["load_images"] = False
        if "root" in node and OmegaConf.is_missing(node, "root"):
            node.root = None  # wsol metadata: only needed for sizes missing from the files
    factory = instantiate(node)
    split = cfg.data.get("test_split") or "test"
    ds = factory(split=split, transform=None, **kwargs)
    if len(ds) == 0:
        raise WSOLError(f"data set {cfg.data.get('name', 'data')}: the {split} split is empty")
    return AnnotationView(ds)


def _evaluate_baseline(cfg: DictConfig, out: Path, localizer, export: Path | None) -> dict:
    protocols = selected_protocols(cfg)
    if export is not None:
        protocols["export_scoremaps"] = ScoremapExport(export, export_resize(cfg, protocols))
    if not protocols:
        raise WSOLError("no protocol selected: set protocol=NAME or protocol=[A,B]")
    ds = _annotation_dataset(cfg)

    def score(batch: dict) -> list[dict]:
        labels = batch["label"]
        # no classifier: the ground-truth class in both columns (the map is the same for
        # every class); the metrics of the guesses are dropped
        classes = torch.stack([labels, labels], dim=1)
        maps = localizer(None, None, None, classes)
        return score_batch(protocols, maps, classes, batch, guesses=False)

    n = _stream(_loader(ds, cfg), score, out)
    metrics = {k: v for k, v in _results(protocols).items() if not is_guess(k)}
    metrics.update(
        mode="baseline", data=cfg.data.get("name", "data"), localizer=localizer.name, images=n
    )
    if export is not None:
        metrics["exported_scoremaps"] = int(protocols["export_scoremaps"].written)
    _finish(out, protocols)
    return metrics


# ---- the loop of modes 2 and 4 -----------------------------------------------------------
def _collate(records: list[dict]) -> dict[str, Any]:
    """`wsol.data.record.collate` (no images here) plus the score maps, when present."""
    batch = collate(records)
    if records and "scoremap" in records[0]:
        batch["scoremap"] = np.stack([r["scoremap"] for r in records])
    return batch


def _loader(ds: Dataset, cfg: DictConfig) -> DataLoader:
    batch_size, workers = int(cfg.get("batch_size", 64)), int(cfg.get("num_workers", 0))
    if batch_size < 1 or workers < 0:
        raise WSOLError(
            f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {workers}"
        )
    return DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate
    )


def _stream(loader: DataLoader, score: Callable[[dict], list[dict]], out: Path) -> int:
    """`score` every batch (adding it to the protocols' states; `wsol.evaluation.scoring`)
    and stream its rows to a part file of predictions.csv (renamed over it by `_finish`).
    Returns the image count."""
    writer = PredictionWriter(out / "predictions.csv")
    n = 0
    try:
        for batch in loader:
            rows = score(batch)
            writer.write(rows)
            n += len(rows)
    finally:
        writer.close()
    if n == 0:
        raise WSOLError("nothing was scored: the split has no images")
    return n


def _finish(out: Path, protocols: Mapping[str, ProtocolMetric]) -> None:
    """predictions.csv (the streamed part renamed over it) and curves.csv, at the end."""
    PredictionWriter.merge(out / "predictions.csv", 1)
    curves = merged_curves(protocols.values())
    if curves is not None:
        write_csv(out / "curves.csv", curves)


def _results(protocols: Mapping[str, ProtocolMetric]) -> dict[str, float]:
    results: dict[str, float] = {}
    for p in protocols.values():
        results.update({k: float(v) for k, v in p.compute().items()})
    return results


def _remove_parts(out: Path) -> None:
    for part in out.glob(".predictions.csv.rank*.part"):
        with contextlib.suppress(OSError):
            part.unlink()


# ---- the job -----------------------------------------------------------------------------
def _mode(cfg: DictConfig, localizer) -> str:
    ckpt, maps = cfg.get("ckpt"), cfg.get("scoremaps")
    meta, masks, export = cfg.get("metadata"), cfg.get("masks"), cfg.get("export_scoremaps")
    if maps is not None:
        if ckpt is not None:
            raise WSOLError(
                "ckpt= and scoremaps= are two modes: give one (scoremaps=DIR scores maps on disk)"
            )
        if export is not None:
            raise WSOLError(
                "export_scoremaps= writes the maps of a checkpoint or a baseline; it does not go with scoremaps="
            )
        if meta is None:
            raise WSOLError(
                "scoremaps=DIR needs metadata=DIR: the wsolevaluation metadata folder of the maps' images "
                "(image_ids.txt, class_labels.txt, image_sizes.txt, localization.txt)"
            )
        return "scoremaps"
    if meta is not None or masks is not None:
        raise WSOLError(
            "metadata= and masks= go with scoremaps=DIR (score maps on disk); "
            "to evaluate a data set's own metadata use data=... (e.g. data=cub_wsol)"
        )
    if ckpt is not None:
        return "checkpoint"
    if not getattr(localizer, "needs_network", True):
        return "baseline"
    raise WSOLError(
        "nothing to evaluate: give ckpt=PATH (a checkpoint written by wsol.run), "
        "scoremaps=DIR metadata=DIR (score maps on disk), or localizer=center / localizer=full "
        f"(a baseline without a network; localizer={localizer.name} needs one)"
    )


def _hydra_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not under @hydra.main (a test composing the config)
        return []


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Run the mode ``cfg`` selects (module docstring) and write its outputs; returns the
    metrics written to metrics.json. ``overrides``: the command-line overrides (default:
    Hydra's), used to tell a ``model=`` the user gave from the config's default."""
    t0 = time.time()
    overrides = _hydra_overrides() if overrides is None else list(overrides)
    localizer = instantiate(cfg.localizer)
    mode = _mode(cfg, localizer)
    out = resolve_output_dir(cfg)
    export = (
        check_writable(Path(str(cfg.export_scoremaps)).expanduser(), "export_scoremaps")
        if cfg.get("export_scoremaps") is not None
        else None
    )
    try:
        if mode == "scoremaps":
            metrics = _evaluate_scoremaps(cfg, out)
        elif mode == "checkpoint":
            metrics = _evaluate_checkpoint(cfg, out, localizer, export, overrides)
        else:
            metrics = _evaluate_baseline(cfg, out, localizer, export)
    except BaseException:
        _remove_parts(out)
        raise
    if rank() != 0:  # under DDP process 0 writes the files
        return metrics
    write_text(out / "evaluate_config.yaml", _config_yaml(cfg))
    return finish(cfg, out, metrics, t0, f"\nwsol.evaluate ({mode}): {out}")


def _config_yaml(cfg: DictConfig) -> str:
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # an unresolvable default the mode did not need (e.g. model.num_classes)
        return OmegaConf.to_yaml(cfg)
