"""The modes of ``python -m wsol.evaluate``: score localization without training.

The config is ``conf/evaluate.yaml``: the main job's ``config.yaml`` (its defaults list
is ``[config, _self_]``, so every group works as in ``wsol.run``: ``data=``,
``protocol=NAME`` or ``protocol=[A,B]``, ``protocol.cam_curve_interval=0.001``,
``localizer=``, ``trainer=``, ``paths.output_dir=``) plus the keys that choose the mode:
``ckpt``, ``scoremaps``, ``metadata``, ``masks``, ``export_scoremaps`` (and
``batch_size``, ``num_workers`` for the readers of modes 2 and 4). ``--help`` lists the
groups and the modes.

1. **A checkpoint on a data set**::

       python -m wsol.evaluate ckpt=RUN/checkpoints/last.ckpt data=cub_wsol \\
           data.dataset.root=IMAGES data.dataset.metadata_root=METADATA \\
           protocol=[cam2016,wsolevaluation] [localizer=gradcam] paths.output_dir=OUT

   The checkpoint (written by ``wsol.run``; read with ``torch.load(weights_only=True)``)
   carries its model config in ``hyper_parameters["model"]``; the network is rebuilt from
   it and its ``net.*`` weights are loaded strictly, so ``model=`` need not be given: a
   ``model=``, ``model.KEY=`` or ``pool=`` that contradicts the checkpoint is an error,
   as is a data set with another number of classes. Then the main job's evaluation
   (`wsol.pipeline.evaluate_network`) writes ``OUT/metrics.json``, ``predictions.csv``,
   ``curves.csv`` and ``cams.png``: the numbers of the training run's own evaluation.

2. **Score maps made by any program** (wsolevaluation's layout)::

       python -m wsol.evaluate scoremaps=DIR metadata=DIR masks=DIR \\
           protocol=wsolevaluation protocol.cam_curve_interval=0.01 paths.output_dir=OUT

   ``scoremaps`` holds ``<image_id>.npy`` for every image id of the metadata, the id
   verbatim with its extension and folders (``001.Black_footed_Albatross/
   Black_Footed_Albatross_0046_18.jpg.npy``): a 224x224 floating array with values in
   [0, 1] (float16, float32 and float64 are read; any other content is a one-line error
   naming the file). ``metadata`` is one split's folder of wsolevaluation metadata
   (``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt``, ``localization.txt``
   with boxes ``id,x0,y0,x1,y1`` or masks ``id,mask_png,ignore_png``, the PNGs relative
   to ``masks``; ``masks=`` only for masks). No image is read. Boxes give MaxBoxAcc and
   MaxBoxAccV2 (``maxboxacc``, ``maxboxacc_v2``, ``maxboxacc_v2_iou30/50/70``, percent),
   masks give PxAP (``pxap``; as wsolevaluation scores OpenImages: masks only). Maps are
   read in batches by ``num_workers`` processes and scored as they come: memory does not
   grow with the number of maps. Only ``protocol=wsolevaluation`` scores fixed-size
   score maps; the CAM 2016 protocols need each image's raw map, so selecting them is an
   error. Writes ``metrics.json``, ``curves.csv`` and ``predictions.csv``.

3. **Export**::

       python -m wsol.evaluate ckpt=PATH data=... export_scoremaps=DIR paths.output_dir=OUT

   Mode 1, and every test image's score map written to ``DIR/<image_id>.npy`` as
   wsolevaluation makes them (`WSOLEvaluationMetric.make_scoremaps`: the ground-truth
   class's map resized to 224 bicubically, min-max normalised; float64, so that mode 2
   on them gives exactly the numbers of mode 1 with ``protocol=wsolevaluation``), each
   file written atomically. Also works with a baseline (mode 4).

4. **A baseline without a network**::

       python -m wsol.evaluate data=cub_wsol data.dataset.metadata_root=METADATA \\
           localizer=center protocol=wsolevaluation paths.output_dir=OUT

   ``localizer=center`` or ``localizer=full`` (``needs_network = False``) and no
   ``ckpt``: the data set's test split is read annotation-only (``load_images=False``
   for the readers that have it, e.g. ``data.dataset.root`` may stay unset for
   ``cub_wsol`` when ``image_sizes.txt`` exists; the synthetic data needs no files) and
   every protocol scores the fixed map. Without a classifier there are no top-1/top-5
   guesses: only the metrics of the ground-truth class (GT-known, MaxBoxAcc, PxAP, ...)
   are reported.

In every mode ``paths.output_dir`` (default ``outputs/evaluate/<date_time>``) is checked
writable before any work; every file is written atomically and only at the end,
``metrics.json`` last, so a failed run leaves earlier contents of the folder as they
were. A `WSOLError` ends the run with one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader, Dataset

import wsol  # noqa: F401  (registers the config resolvers)
from wsol.cli import CONF_DIR
from wsol.data.common import inside, require_dir
from wsol.data.record import collate
from wsol.data.wsol_metadata import SPLITS, WSOLMetadataDataset
from wsol.errors import WSOLError
from wsol.io import check_writable, save_npy, write_csv, write_text
from wsol.job import (
    rank,
    resolve_output_dir,
    resolve_precision,
    run_identity,
    selected_protocols,
)
from wsol.models.registry import build_model
from wsol.models.weights import describe_load_error, load_own_weights
from wsol.protocols.metric import ProtocolMetric, batch_column, boxes_text, merged_curves
from wsol.protocols.wsolevaluation import WSOLEvaluationMetric, check_scoremap
from wsol.report.metrics import format_table, write_metrics
from wsol.report.predictions import PredictionWriter
from wsol.report.tables import machine_summary

log = logging.getLogger(__name__)

__all__ = [
    "MetadataAnnotations",
    "ScoremapDataset",
    "ScoremapExport",
    "evaluate",
    "load_scoremap",
    "read_checkpoint",
]

#: label range accepted from a metadata folder of score maps (their labels are not used)
_ANY_NUM_CLASSES = 2**31 - 1
#: metrics and prediction columns that need a classifier's guesses (absent for baselines)
_GUESS_WORDS = ("top1", "top5", "pred_class", "pred_box")
_NPY_MAGIC = b"\x93NUMPY"


# ---- mode 1: a checkpoint ----------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(model config, network state dict without the ``net.`` prefix) of a checkpoint
    written by ``wsol.run``; `WSOLError` naming the file for anything else."""
    p = Path(path).expanduser()
    what = f"ckpt={p}"
    if not p.is_file():
        raise WSOLError(f"{what}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling, zip, EOF and I/O errors: one line saying which
        raise WSOLError(f"{what}: not a checkpoint: {describe_load_error(p, e)}") from e
    need = "a checkpoint written by wsol.run (a Lightning checkpoint with state_dict and hyper_parameters['model'])"
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        held = (
            f"a dict without 'state_dict' (keys: {', '.join(map(str, list(obj)[:5]))})"
            if isinstance(obj, Mapping)
            else f"a {type(obj).__name__}"
        )
        raise WSOLError(f"{what}: not {need}: it holds {held}")
    hp = obj.get("hyper_parameters")
    model = hp.get("model") if isinstance(hp, Mapping) else None
    if not isinstance(model, Mapping) or not model.get("name") or "num_classes" not in model:
        raise WSOLError(f"{what}: not {need}: it has no model config (hyper_parameters['model'])")
    sd = {
        k[len("net.") :]: v
        for k, v in obj["state_dict"].items()
        if isinstance(k, str) and k.startswith("net.") and isinstance(v, torch.Tensor)
    }
    if not sd:
        raise WSOLError(f"{what}: not {need}: its state_dict has no 'net.' weights")
    return dict(model), sd


def _norm(v: Any) -> Any:
    """A config value in a form that compares equal across list/tuple and int/float."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def _check_model_overrides(
    cfg: DictConfig, overrides: list[str], model: Mapping, what: str
) -> None:
    """A ``model=``, ``model.KEY=`` or ``pool=`` the user gave that contradicts the
    checkpoint's model config is an error (the checkpoint decides the network)."""
    for o in overrides:
        m = re.match(r"^[+~]*(model|pool)((?:\.\w+)*)=(.*)$", o.strip())
        if not m:
            continue
        group, sub, value = m.groups()
        key = sub[1:]
        if group == "model" and not key:
            if value.strip() != str(model["name"]):
                raise WSOLError(
                    f"{what} holds a {model['name']} network, not model={value.strip()} "
                    f"(leave model= out: the checkpoint's own model config is used)"
                )
        elif group == "pool" and key in ("", "name"):
            if "pool" in model and value.strip() != str(model["pool"]):
                raise WSOLError(
                    f"{what} holds a {model['name']} network with pool={model['pool']}, not pool={value.strip()}"
                )
        elif group == "model":
            head = key.split(".")[0]
            if head not in model:
                raise WSOLError(
                    f"{what}: model.{key} is not a setting of the checkpoint's model config "
                    f"({', '.join(k for k in model if not k.startswith('_'))})"
                )
            given = OmegaConf.select(cfg.model, key, throw_on_missing=False)
            if isinstance(given, (DictConfig, list)) or OmegaConf.is_config(given):
                given = OmegaConf.to_container(given, resolve=True)
            mine: Any = model
            for part in key.split("."):
                mine = mine.get(part) if isinstance(mine, Mapping) else None
            if _norm(given) != _norm(mine):
                raise WSOLError(
                    f"{what}: model.{key}={given!r} contradicts the checkpoint's model.{key}={mine!r} "
                    f"(leave it out: the checkpoint's own model config is used)"
                )


def _adopt_model(cfg: DictConfig, model: Mapping) -> None:
    """Make the checkpoint's model config the run's ``model`` (and its pool the ``pool``),
    so that the data's ``${model.input_size}``, mean and std are the checkpoint's."""
    with open_dict(cfg):
        cfg.model = OmegaConf.create({**dict(model), "pretrained": False, "weights": None})
        pool = model.get("pool")
        if pool is not None and (cfg.get("pool") is None or cfg.pool.get("name") != pool):
            f = CONF_DIR / "pool" / f"{pool}.yaml"
            cfg.pool = OmegaConf.load(f) if f.is_file() else OmegaConf.create({"name": pool})


def _build_network(model: Mapping, sd: dict[str, torch.Tensor], what: str):
    """The checkpoint's network, its weights loaded strictly (`wsol.models.weights`). The
    file's ``_target_`` is not followed: every wsol model is built by `build_model`."""
    kwargs = {k: v for k, v in model.items() if not str(k).startswith("_")}
    kwargs.update(pretrained=False, weights=None)
    try:
        net = build_model(**kwargs)
    except WSOLError as e:
        raise WSOLError(f"{what}: the checkpoint's model config: {e}") from None
    except TypeError as e:
        raise WSOLError(f"{what}: the checkpoint's model config does not build: {e}") from None
    load_own_weights(net, str(model["name"]), sd, what)
    return net


def _evaluate_checkpoint(
    cfg: DictConfig, out: Path, localizer, export: Path | None, overrides: list[str]
) -> dict:
    path = Path(str(cfg.ckpt)).expanduser()
    what = f"ckpt={path}"
    model, sd = read_checkpoint(path)
    _check_model_overrides(cfg, overrides, model, what)
    _adopt_model(cfg, model)
    dm = instantiate(cfg.data)
    n_data, n_ckpt = int(dm.num_classes), int(model["num_classes"])
    if n_data != n_ckpt:
        raise WSOLError(
            f"{what}: the checkpoint's {model['name']} has {n_ckpt} classes but data "
            f"{cfg.data.get('name', 'data')} has {n_data}; evaluate it on the data set it was trained on"
        )
    net = _build_network(model, sd, what)
    if resolve_precision(cfg, log_line=False).channels_last:  # as the main job evaluates
        net.to(memory_format=torch.channels_last)
    protocols = selected_protocols(cfg)
    if export is not None:
        if not (getattr(net, "has_cam", False) or localizer.name != "cam"):
            raise WSOLError(
                f"{what}: {model['name']} has no CAM, so localizer=cam makes no maps to export; "
                "set localizer=gradcam or localizer=backprop"
            )
        protocols["export_scoremaps"] = ScoremapExport(export, _resize(cfg, protocols))
    from wsol.pipeline import evaluate_network  # Lightning: only this mode needs it

    metrics = evaluate_network(cfg, net, dm, localizer, protocols, out, logger=None)
    metrics.update(run_identity(cfg, localizer.name))
    metrics.update(mode="checkpoint", ckpt=str(path))
    if export is not None:
        metrics["exported_scoremaps"] = int(protocols["export_scoremaps"].written)
    return metrics


# ---- mode 3: export ----------------------------------------------------------------------
class ScoremapExport(ProtocolMetric):
    """Not a protocol: writes every image's score map (`WSOLEvaluationMetric.make_scoremaps`
    of the maps, float64) to ``folder/<image_id>.npy``, atomically, as the evaluation loop
    hands it the maps. Reports no metric. ``folder=None`` writes nothing (the copy the
    main job makes for a val split)."""

    name = "export_scoremaps"

    def __init__(self, folder: str | os.PathLike | None = None, resize: int = 224, **kwargs):
        super().__init__(**kwargs)
        self.folder = Path(folder) if folder is not None else None
        self.maker = WSOLEvaluationMetric(resize=resize)
        self.operating_thresholds = None
        self.add_count("written")

    @property
    def init_args(self) -> dict:
        return {"folder": None, "resize": self.maker.resize}

    def chosen_thresholds(self) -> dict:
        return {}

    def score(self, maps, classes, batch) -> dict[str, Any]:
        if self.folder is None:
            return {"written": 0}
        scoremaps = self.maker.make_scoremaps(maps)
        ids = batch_column(batch, "id", len(scoremaps))
        for image_id, s in zip(ids, scoremaps):
            target = inside(self.folder, f"{image_id}.npy", f"export_scoremaps={self.folder}")
            save_npy(target, s)
        return {"written": len(scoremaps)}

    def update(self, result: dict[str, Any]) -> None:  # type: ignore[override]
        self._add("written", int(result["written"]))

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        return {}


def _resize(cfg: DictConfig, protocols: Mapping) -> int:
    p = protocols.get("wsolevaluation")
    if p is not None:
        return int(p.resize)
    return int((cfg.get("protocol") or {}).get("resize_length", 224))


# ---- mode 2: score maps on disk ----------------------------------------------------------
def _sniff_kind(folder: Path) -> str:
    """``boxes`` or ``masks``: by the number of fields of localization.txt's first line."""
    f = folder / "localization.txt"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(f, encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip():
                    return "masks" if len(line.rstrip("\r\n").split(",")) == 3 else "boxes"
    return "boxes"  # missing or empty: the reader says what is wrong


@contextlib.contextmanager
def _as_split(folder: Path) -> Iterator[tuple[Path, str, Callable[[str], str]]]:
    """(metadata_root, split, fix) such that ``metadata_root / split`` is ``folder``: its
    parent when the folder is named train/val/test, else a temporary folder with a link
    named ``test``; ``fix`` rewrites the temporary path in messages to ``folder``."""
    if folder.name in SPLITS:
        yield folder.parent, folder.name, lambda s: s
        return
    with tempfile.TemporaryDirectory(prefix="wsol-metadata-") as tmp:
        link = Path(tmp) / "test"
        link.symlink_to(folder.resolve(), target_is_directory=True)
        yield Path(tmp), "test", lambda s: s.replace(str(link), str(folder))


class MetadataAnnotations(Dataset):
    """The records (no image) of one folder of wsolevaluation metadata, read with
    `WSOLMetadataDataset` (annotation-only). Box records carry their boxes and the image
    size of ``image_sizes.txt``; mask records carry the 0/1/255 mask and no box (PxAP
    only, as wsolevaluation scores masks)."""

    def __init__(self, folder: str | os.PathLike, masks: str | os.PathLike | None = None):
        folder = require_dir(
            folder, "metadata", "the folder of image_ids.txt, class_labels.txt, localization.txt"
        )
        self.folder = folder
        self.kind = _sniff_kind(folder)
        sizes = (folder / "image_sizes.txt").is_file()
        if self.kind == "masks":
            if masks is None:
                raise WSOLError(
                    f"{folder / 'localization.txt'} lists mask PNGs: set masks=DIR to the folder they are relative to"
                )
            masks = require_dir(masks, "masks", "the folder the mask PNGs are relative to")
        elif not sizes:
            raise WSOLError(
                f"{folder / 'image_sizes.txt'} does not exist: scoring boxes on 224x224 score maps needs each image's size"
            )
        with _as_split(folder) as (root, split, fix):
            try:
                ds = WSOLMetadataDataset(
                    split=split,
                    # the image root is never read; it stands in where sizes are missing
                    root=None if sizes else str(masks),
                    metadata_root=str(root),
                    dataset_name="OpenImages" if self.kind == "masks" else "CUB",
                    num_classes=_ANY_NUM_CLASSES,
                    mask_root=str(masks) if masks is not None else None,
                    load_images=False,
                )
            except WSOLError as e:
                raise WSOLError(fix(str(e))) from None
            ann = ds.ann
            ann.folder = folder
            for name in ("mask_sources",):
                if getattr(ann, name) is not None:
                    setattr(ann, name, [fix(s) for s in getattr(ann, name)])
            if ann.box_sources is not None:
                ann.box_sources = [[fix(s) for s in srcs] for srcs in ann.box_sources]
        if not ann.has_localization:
            raise WSOLError(f"{folder / 'localization.txt'} does not exist: nothing to score")
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    @property
    def ids(self) -> list[str]:
        return self.ds.ids

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if self.kind == "boxes":
            return self.ds.annotation(index)
        k = int(self.ds.order[index])
        ann = self.ds.ann
        mask, _ = self.ds._mask(k)  # the reader's get_mask (instances OR-ed, ignore = 255)
        size = ann.sizes[k] if ann.sizes is not None else tuple(mask.shape)
        return {
            "label": int(ann.labels[k]),
            "boxes": torch.zeros((0, 4), dtype=torch.float64),
            "size": (int(size[0]), int(size[1])),
            "mask": mask,
            "id": ann.ids[k],
            "index": index,
        }


def load_scoremap(folder: Path, image_id: str, size: int | None = 224) -> np.ndarray:
    """``folder/<image_id>.npy`` checked as a score map (`check_scoremap`), as float64;
    `WSOLError` naming the file when it is missing, not a .npy array or not a valid map."""
    path = folder / f"{image_id}.npy"
    label = f"score map {path}"
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            if head != _NPY_MAGIC:
                raise WSOLError(
                    f"{label} is not a .npy file (it starts with {head!r}; write it with numpy.save)"
                )
            f.seek(0)
            array = np.load(f, allow_pickle=False)
    except FileNotFoundError:
        raise WSOLError(
            f"{label} does not exist (scoremaps= must hold <image_id>.npy for image {image_id!r})"
        ) from None
    except IsADirectoryError:
        raise WSOLError(f"{label} is a folder, not a .npy file") from None
    except (ValueError, OSError, EOFError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise WSOLError(f"{label} cannot be read as a numpy array: {msg}") from None
    return check_scoremap(array, label, size)


class ScoremapDataset(Dataset):
    """Annotation records plus their score map (``scoremap``: float64 (size, size))."""

    def __init__(self, annotations: Dataset, folder: str | os.PathLike, size: int = 224):
        self.annotations = annotations
        self.folder = require_dir(folder, "scoremaps", "the folder of score maps <image_id>.npy")
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.annotations[index])
        record["scoremap"] = load_scoremap(self.folder, record["id"], self.size)
        return record


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

    def score(batch: dict) -> dict:
        return {"wsolevaluation": metric.score_scoremaps(batch["scoremap"], batch, checked=True)}

    n = _stream(_loader(ds, cfg), protocols, score, out, drop_guesses=False)
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
        protocols["export_scoremaps"] = ScoremapExport(export, _resize(cfg, protocols))
    if not protocols:
        raise WSOLError("no protocol selected: set protocol=NAME or protocol=[A,B]")
    ds = _annotation_dataset(cfg)

    def score(batch: dict) -> dict:
        labels = batch["label"]
        # no classifier: the ground-truth class in both columns (the map is the same for
        # every class); the metrics of the guesses are dropped
        classes = torch.stack([labels, labels], dim=1)
        maps = localizer(None, None, None, classes)
        return {name: p.score(maps, classes, batch) for name, p in protocols.items()}

    n = _stream(_loader(ds, cfg), protocols, score, out, drop_guesses=True)
    metrics = {k: v for k, v in _results(protocols).items() if not _is_guess(k)}
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


def _is_guess(key: str) -> bool:
    return any(w in key for w in _GUESS_WORDS)


def _stream(
    loader: DataLoader,
    protocols: Mapping[str, ProtocolMetric],
    score: Callable[[dict], dict],
    out: Path,
    drop_guesses: bool,
) -> int:
    """Score every batch, add it to the protocols' states and stream its rows to a part
    file of predictions.csv (renamed over it by `_finish`). Returns the image count."""
    writer = PredictionWriter(out / "predictions.csv")
    n = 0
    try:
        for batch in loader:
            results = score(batch)
            rows = [
                {"index": int(i), "id": image_id, "label": int(y), "gt_boxes": boxes_text(b)}
                for i, image_id, y, b in zip(
                    batch["index"].tolist(), batch["id"], batch["label"].tolist(), batch["boxes"]
                )
            ]
            for name, p in protocols.items():
                p.update(results[name])
                for row, extra in zip(rows, p.rows(results[name])):
                    row.update(
                        {k: v for k, v in extra.items() if not (drop_guesses and _is_guess(k))}
                    )
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
    metrics["machine"] = machine_summary(cfg.trainer.get("accelerator"))
    metrics["total_seconds"] = round(time.time() - t0, 1)
    if rank() != 0:  # under DDP process 0 writes the files
        return metrics
    write_text(out / "evaluate_config.yaml", _config_yaml(cfg))
    write_metrics(out / "metrics.json", metrics)
    print(format_table(metrics, title=f"\nwsol.evaluate ({mode}): {out}"))
    return metrics


def _config_yaml(cfg: DictConfig) -> str:
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # an unresolvable default the mode did not need (e.g. model.num_classes)
        return OmegaConf.to_yaml(cfg)
