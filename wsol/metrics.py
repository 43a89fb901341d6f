"""The suite's localization metrics for anyone's training loop (docs/API.md).

Each class here is one of the suite's protocol metrics (`wsol.protocols`) with an
``update(maps, targets)`` a user can call with the maps of any map maker and their own
annotations; the scoring is the protocol's own, so the numbers are those of
``python -m wsol.evaluate`` on the same maps, and the states are its integer sums, so a
DDP all-reduce (torchmetrics syncs them in ``compute()``) gives exactly the numbers of
one process.

- ``maps``: (B, H, W) or (B, J, H, W), a torch tensor or a numpy array, floating point,
  larger = more object. Column 0 is the ground-truth class's map (the suite's
  convention); columns 1.. are the maps of the top-k predicted classes (used by the CAM
  2016 errors only). By default they are *raw* maps at any resolution, made into score
  maps by the protocol (wsolevaluation: resized to 224x224 bicubically, min-max
  normalised; CAM 2016: upsampled bilinearly to each original image). With
  ``scoremaps=True`` the wsolevaluation metrics take ready score maps instead
  ((B, 224, 224) with values in [0, 1], what ``python -m wsol.evaluate scoremaps=DIR``
  reads) and score them as they are.
- ``targets``: a dict with the keys below, or a `Targets`; each metric needs some:

  ====================  ======================================================  ===========================
  key                   value                                                   needed by
  ====================  ======================================================  ===========================
  ``boxes``             per image an (N_i, 4) array of ground-truth boxes        MaxBoxAcc, MaxBoxAccV2,
                        ``[x0, y0, x1, y1]`` in pixel-edge coordinates of the    Cam2016Error,
                        *original* image, ``x1``/``y1`` exclusive (torchvision's  Cam2016OfficialError
                        XYXY; the box of pixel columns i..j, rows k..l is
                        ``[i, k, j + 1, l + 1]``); inside the image; N_i = 0
                        leaves the image out of the box metrics
  ``sizes``             (B, 2) ``(height, width)`` of the original images       the same
  ``labels``            (B,) ground-truth classes                               Cam2016Error,
                                                                                Cam2016OfficialError
  ``masks``             per image None (left out) or an (h, w) mask at any      PxAP
                        resolution: 0 background, 1 object, 255 ignore
  ``ids``               per image a name, for error messages (optional)          -
  ====================  ======================================================  ===========================

  `WSOLEvaluation` scores boxes (with sizes) and masks, whichever are given. A key a
  metric needs and does not find, or a key that is none of these, is a one-line
  `WSOLError` naming it.

`score` is the simplest case: a folder of score maps (the format of ``python -m
wsol.evaluate scoremaps=DIR``) or a dict of arrays, scored against a folder of
wsolevaluation metadata, read by the score-map mode's own reader
(`wsol.evaluation.scoremaps`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wsol.data.common import require_dir
from wsol.errors import WSOLError
from wsol.evaluation.scoremaps import MetadataAnnotations, ScoremapDataset
from wsol.evaluation.scoring import is_guess
from wsol.protocols.cam2016 import Cam2016Metric
from wsol.protocols.cam2016_official import Cam2016OfficialMetric
from wsol.protocols.wsolevaluation import WSOLEvaluationMetric, check_scoremap, make_scoremap

__all__ = [
    "Cam2016Error",
    "Cam2016OfficialError",
    "MaxBoxAcc",
    "MaxBoxAccV2",
    "PxAP",
    "Targets",
    "WSOLEvaluation",
    "make_scoremap",
    "score",
]


@dataclass
class Targets:
    """The annotations of a batch of B images (see the module docstring for each field's
    convention); a plain dict with the same keys does as well."""

    boxes: Any = None
    sizes: Any = None
    labels: Any = None
    masks: Any = None
    ids: Any = None


_KEYS = tuple(f.name for f in fields(Targets))
_WHAT = {
    "boxes": "per image an (N_i, 4) array of [x0, y0, x1, y1] boxes, x1/y1 exclusive",
    "sizes": "(B, 2) (height, width) of the original images",
    "labels": "(B,) ground-truth classes",
    "masks": "per image None or an (h, w) mask of 0 background, 1 object, 255 ignore",
    "ids": "per image a name",
}


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            value = value.float()
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _whole(a: np.ndarray) -> bool:
    """Whether every value is a whole number (integer dtype, or integral floats)."""
    if a.dtype.kind in "iu":
        return True
    return a.dtype.kind == "f" and bool(np.isfinite(a).all()) and bool((a == np.round(a)).all())


class _Inputs:
    """One ``update``'s maps and targets, checked, as the protocols' batch dict. ``who``
    (the metric's class name) starts every message."""

    def __init__(self, who: str, maps, targets) -> None:
        self.who = who
        self.maps = self._maps(maps)
        self.n = int(self.maps.shape[0])
        self.given = self._targets(targets)
        self.batch: dict[str, Any] = {}
        if self.given.get("ids") is not None:
            ids = list(self.given["ids"])
            self._length("ids", ids)
            self.batch["id"] = [str(i) for i in ids]

    def fail(self, message: str) -> WSOLError:
        return WSOLError(f"{self.who}.update: {message}")

    def name(self, b: int) -> str:
        return f"image {self.batch['id'][b]!r}" if "id" in self.batch else f"image {b}"

    def _maps(self, maps):
        if not isinstance(maps, torch.Tensor | np.ndarray):
            raise self.fail(
                f"maps must be a torch tensor or a numpy array, got {type(maps).__name__}"
            )
        if maps.ndim not in (3, 4):
            raise self.fail(
                f"maps must be (B, H, W) or (B, J, H, W), got shape {tuple(maps.shape)}"
            )
        floating = (
            maps.is_floating_point() if isinstance(maps, torch.Tensor) else maps.dtype.kind == "f"
        )
        if not floating:
            raise self.fail(f"maps must be floating point, got {maps.dtype}")
        return maps[:, None] if maps.ndim == 3 else maps

    def _targets(self, targets) -> dict[str, Any]:
        if isinstance(targets, Targets):
            given = {k: getattr(targets, k) for k in _KEYS}
        elif isinstance(targets, Mapping):
            unknown = [str(k) for k in targets if k not in _KEYS]
            if unknown:
                raise self.fail(
                    f"unknown targets key(s) {', '.join(map(repr, unknown))}; "
                    f"the keys are {', '.join(_KEYS)}"
                )
            given = dict(targets)
        else:
            raise self.fail(
                f"targets must be a dict or a wsol.metrics.Targets, got {type(targets).__name__}"
            )
        return {k: v for k, v in given.items() if v is not None}

    def need(self, key: str, why: str = "") -> Any:
        if key not in self.given:
            raise self.fail(f"targets lack {key!r} ({_WHAT[key]}){why}")
        return self.given[key]

    def _length(self, key: str, values) -> None:
        if len(values) != self.n:
            raise self.fail(f"targets[{key!r}] has {len(values)} entries for {self.n} maps")

    def sizes(self) -> np.ndarray:
        a = _numpy(self.need("sizes", ": boxes are scored at the original image's scale"))
        if a.ndim != 2 or a.shape[1] != 2 or not _whole(a):
            raise self.fail(
                f"targets['sizes'] must be (B, 2) whole numbers (height, width), got {a.dtype} {a.shape}"
            )
        self._length("sizes", a)
        if a.size and a.min() < 1:
            b = int(np.argwhere(a < 1)[0, 0])
            raise self.fail(f"targets['sizes'] of {self.name(b)} is not positive: {a[b].tolist()}")
        sizes = a.astype(np.int64)
        self.batch["size"] = sizes
        return sizes

    def boxes(self) -> list[np.ndarray]:
        sizes = self.sizes() if "size" not in self.batch else self.batch["size"]
        given = self.need("boxes")
        if isinstance(given, torch.Tensor | np.ndarray) and given.ndim != 3:
            raise self.fail(
                f"targets['boxes'] must hold one (N_i, 4) array per image, got shape {tuple(given.shape)}"
            )
        given = list(given)
        self._length("boxes", given)
        out = []
        for b, item in enumerate(given):
            a = _numpy(item).astype(np.float64)
            if a.size == 0:
                a = a.reshape(0, 4)
            if a.ndim != 2 or a.shape[1] != 4:
                raise self.fail(
                    f"targets['boxes'] of {self.name(b)} must be (N, 4) [x0, y0, x1, y1], got shape {a.shape}"
                )
            h, w = (int(v) for v in sizes[b])
            for box in a:
                x0, y0, x1, y1 = box.tolist()
                if not np.isfinite(box).all() or x1 <= x0 or y1 <= y0:
                    raise self.fail(
                        f"box {box.tolist()} of {self.name(b)} is empty or not finite "
                        "(boxes are [x0, y0, x1, y1] with x1 > x0, y1 > y0)"
                    )
                if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                    raise self.fail(
                        f"box {box.tolist()} of {self.name(b)} reaches outside its image of "
                        f"(height, width) ({h}, {w}); boxes are in the original image's pixel-edge "
                        "coordinates, clipped to it"
                    )
            out.append(a)
        self.batch["boxes"] = out
        return out

    def labels(self) -> np.ndarray:
        a = _numpy(self.need("labels"))
        if a.ndim != 1 or not _whole(a):
            raise self.fail(
                f"targets['labels'] must be (B,) whole numbers, got {a.dtype} {a.shape}"
            )
        self._length("labels", a)
        labels = a.astype(np.int64)
        self.batch["label"] = labels
        return labels

    def masks(self) -> list[np.ndarray | None]:
        given = list(self.need("masks"))
        self._length("masks", given)
        out: list[np.ndarray | None] = []
        for b, item in enumerate(given):
            if item is None:
                out.append(None)
                continue
            a = _numpy(item)
            if a.ndim != 2:
                raise self.fail(
                    f"targets['masks'] of {self.name(b)} must be 2-D, got shape {a.shape}"
                )
            if a.dtype != np.uint8:
                if not (a.dtype == bool or (_whole(a) and np.isin(a, (0, 1, 255)).all())):
                    raise self.fail(
                        f"targets['masks'] of {self.name(b)} must hold 0 (background), 1 (object) "
                        f"and 255 (ignore) only, got {a.dtype} values"
                    )
                a = a.astype(np.uint8)
            elif not np.isin(a, (0, 1, 255)).all():
                bad = np.setdiff1d(np.unique(a), (0, 1, 255))[:5].tolist()
                raise self.fail(
                    f"targets['masks'] of {self.name(b)} must hold 0 (background), 1 (object) and "
                    f"255 (ignore) only, got {bad}"
                )
            out.append(a)
        self.batch["mask"] = out
        return out

    def has(self, key: str) -> bool:
        return key in self.given


# ---- wsolevaluation: MaxBoxAcc, MaxBoxAccV2, PxAP ----------------------------------------
class WSOLEvaluation(WSOLEvaluationMetric):
    """wsolevaluation's MaxBoxAcc, MaxBoxAccV2 and PxAP in one pass over the maps
    (`wsol.protocols.wsolevaluation`): ``compute()`` gives the keys of ``python -m
    wsol.evaluate`` (``maxboxacc``, ``maxboxacc_v2``, ``maxboxacc_v2_iou30/50/70``, each
    with its ``_threshold``; ``pxap``), percent, for whichever of boxes and masks were
    given. `MaxBoxAcc`, `MaxBoxAccV2` and `PxAP` are this metric reporting one of them.

    Args:
        scoremaps: ``update`` gets ready score maps ((B, resize, resize) in [0, 1], as
            ``python -m wsol.evaluate scoremaps=DIR`` reads them), scored as they are;
            default: raw maps of any size, resized and normalised as wsolevaluation does.
        cam_curve_interval, iou_thresholds, resize: the protocol's settings, as
            ``protocol.cam_curve_interval``, ``protocol.iou_thresholds``,
            ``protocol.resize_length`` (defaults: conf/protocol/wsolevaluation.yaml's).
        kwargs: torchmetrics' (``sync_on_compute``, ``process_group``, ...).
    """

    def __init__(
        self,
        *,
        scoremaps: bool = False,
        cam_curve_interval: float = 0.01,
        iou_thresholds: Sequence[float] = (30, 50, 70),
        resize: int = 224,
        **kwargs: Any,
    ):
        super().__init__(cam_curve_interval, iou_thresholds, resize, **kwargs)
        if not isinstance(scoremaps, bool):
            raise WSOLError(f"scoremaps={scoremaps!r}: must be True or False")
        self.scoremaps = scoremaps

    #: which of the protocol's targets this metric scores
    _scores_boxes = True
    _scores_masks = True

    def update(self, maps, targets) -> None:  # type: ignore[override]
        """Add one batch: ``maps`` (B, H, W) or (B, J, H, W) (column 0 scored) and its
        ``targets`` (module docstring)."""
        x = _Inputs(type(self).__name__, maps, targets)
        boxes = self._scores_boxes and (x.has("boxes") or not self._scores_masks)
        masks = self._scores_masks and (x.has("masks") or not self._scores_boxes)
        if not (boxes or masks):
            raise x.fail("targets lack 'boxes' (with 'sizes') and 'masks': nothing to score")
        if boxes:
            x.boxes()
        else:  # the box sweep is skipped for images without a GT box
            x.batch["boxes"] = [np.zeros((0, 4))] * x.n
            x.batch["size"] = np.ones((x.n, 2), dtype=np.int64)
        if masks:
            x.masks()
        if x.n == 0:
            return
        if self.scoremaps:
            column0 = x.maps[:, 0]
            score = _numpy(column0) if isinstance(column0, torch.Tensor) else column0
            result = self.score_scoremaps(score, x.batch)  # each map checked, named by its id
        else:
            result = self.score(x.maps, None, x.batch)
        super().update(result)

    def _reports(self, key: str) -> bool:
        return True

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        """The metrics (percent) of every image added, summed over the processes."""
        return {k: v for k, v in super().compute().items() if self._reports(k)}


class MaxBoxAcc(WSOLEvaluation):
    """wsolevaluation's MaxBoxAcc (V1): the box of the largest contour, IoU 50, at the
    best threshold over the data set. Needs ``boxes`` and ``sizes``; ``compute()`` gives
    ``maxboxacc`` and ``maxboxacc_threshold``. Args as `WSOLEvaluation`."""

    higher_is_better = True
    _scores_masks = False

    def _reports(self, key: str) -> bool:
        return key == "maxboxacc" or (
            key.startswith("maxboxacc_") and not key.startswith("maxboxacc_v2")
        )


class MaxBoxAccV2(WSOLEvaluation):
    """wsolevaluation's MaxBoxAccV2: every contour's box, the mean over the IoU
    thresholds of each one's best accuracy. Needs ``boxes`` and ``sizes``; ``compute()``
    gives ``maxboxacc_v2`` and ``maxboxacc_v2_iou30/50/70`` with their ``_threshold``.
    Args as `WSOLEvaluation`."""

    higher_is_better = True
    _scores_masks = False

    def _reports(self, key: str) -> bool:
        return key.startswith("maxboxacc_v2")


class PxAP(WSOLEvaluation):
    """wsolevaluation's PxAP: pixel average precision of the score maps against the
    masks (ignore pixels left out). Needs ``masks``; ``compute()`` gives ``pxap``. Args
    as `WSOLEvaluation`."""

    higher_is_better = True
    _scores_boxes = False

    def _reports(self, key: str) -> bool:
        return key == "pxap"


# ---- CAM 2016 -----------------------------------------------------------------------------
class _Cam2016Update:
    """``update(maps, targets, classes=None)`` of the CAM 2016 metrics. Without the
    classes of the map columns only column 0 is scored (as ``python -m wsol.evaluate``
    scores a baseline): the errors of the top-1/top-5 guesses are then not reported,
    which an integer state of the images scored with guesses decides across processes."""

    def _count_guesses(self) -> None:
        self.add_count("images_with_guesses")  # type: ignore[attr-defined]

    def update(self, maps, targets, classes=None) -> None:  # type: ignore[override]
        """Add one batch: ``maps`` (B, J, h, w) raw maps of the classes ``classes``
        (B, J): column 0 the label, columns 1..5 the top-k predicted classes in
        descending score; or ``classes=None`` and column 0 only. Needs ``labels``,
        ``boxes`` and ``sizes``."""
        x = _Inputs(type(self).__name__, maps, targets)
        labels = x.labels()
        x.boxes()
        m = x.maps
        if classes is None:
            guesses = False
        else:
            cls = _numpy(classes)
            if cls.ndim != 2 or cls.shape[0] != x.n or cls.shape[1] < 1 or not _whole(cls):
                raise x.fail(
                    f"classes must be (B, J) whole numbers for {x.n} maps, got {cls.dtype} {cls.shape}"
                )
            if cls.shape[1] > m.shape[1]:
                raise x.fail(f"classes has {cls.shape[1]} columns but maps only {m.shape[1]}")
            cls = cls.astype(np.int64)
            wrong = np.flatnonzero(cls[:, 0] != labels)
            if wrong.size:
                b = int(wrong[0])
                raise x.fail(
                    f"classes[:, 0] must be the labels (column 0 is the ground-truth class's "
                    f"map); {x.name(b)} has {cls[b, 0]} and label {labels[b]}"
                )
            guesses = cls.shape[1] > 1
        if x.n == 0:
            return
        if guesses:
            m = m[:, : cls.shape[1]]
        else:  # the ground-truth column twice: the protocols need a guess column
            m = m[:, [0, 0]]
            cls = np.stack([labels, labels], axis=1)
        result = self.score(m, cls, x.batch)  # type: ignore[attr-defined]
        super().update(result)  # type: ignore[misc]
        self._add("images_with_guesses", x.n if guesses else 0)  # type: ignore[attr-defined]

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        """The metrics (percent), summed over the processes; the guesses' errors only
        when every image was scored with its classes."""
        out = super().compute()  # type: ignore[misc]
        if int(self.images_with_guesses) != int(self.n):  # type: ignore[attr-defined]
            out = {k: v for k, v in out.items() if not is_guess(k)}
        return out


class Cam2016Error(_Cam2016Update, Cam2016Metric):
    """CAM 2016 as the paper's text describes it (`wsol.protocols.cam2016`): one box per
    class (pixels ``>= threshold * max`` of the map upsampled to the image, the largest
    connected component), ``loc_top1_err``, ``loc_top5_err``, ``gt_known_loc``,
    ``mean_iou``, ``full_image_gt_known_loc`` (percent). ``update(maps, targets,
    classes=None)``; needs ``labels``, ``boxes``, ``sizes``.

    Args: ``threshold``, ``connectivity``, ``iou_threshold`` as
    conf/protocol/cam2016.yaml's ``cam_threshold``, ``connectivity``, ``loc_iou``; kwargs
    torchmetrics'."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._count_guesses()


class Cam2016OfficialError(_Cam2016Update, Cam2016OfficialMetric):
    """CAM 2016 by the release's box generator (`wsol.protocols.cam2016_official`):
    the ``official_*`` keys. ``update(maps, targets, classes=None)``; needs ``labels``,
    ``boxes``, ``sizes``.

    Args: ``thresholds``, ``dt_keep``, ``iou_threshold`` as
    conf/protocol/cam2016_official.yaml's ``official_thresholds``, ``official_dt_keep``,
    ``loc_iou``; kwargs torchmetrics'."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._count_guesses()


# ---- score: a folder or a dict of score maps against a metadata folder --------------------
class _ArrayScoremaps(Dataset):
    """`ScoremapDataset` with the maps of a dict (image id -> array) instead of files."""

    def __init__(self, annotations: MetadataAnnotations, maps: Mapping, size: int):
        self.annotations = annotations
        self.maps = maps
        self.size = size

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.annotations[index])
        image_id = record["id"]
        if image_id not in self.maps:
            raise WSOLError(
                f"maps has no score map for image {image_id!r} of "
                f"{self.annotations.folder / 'image_ids.txt'} (its keys are the image ids verbatim)"
            )
        array = self.maps[image_id]
        if isinstance(array, torch.Tensor):
            array = _numpy(array)
        record["scoremap"] = check_scoremap(array, f"score map of image {image_id!r}", self.size)
        return record


def _collate(records: list[dict]) -> dict[str, Any]:
    from wsol.data.record import collate

    batch = collate(records)
    batch["scoremap"] = np.stack([r["scoremap"] for r in records])
    return batch


def score(
    maps: str | os.PathLike | Mapping[str, Any],
    metadata: str | os.PathLike,
    masks: str | os.PathLike | None = None,
    *,
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[float] = (30, 50, 70),
    resize: int = 224,
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict[str, float]:
    """MaxBoxAcc, MaxBoxAccV2 (metadata with boxes) or PxAP (with masks) of score maps:
    the metrics ``python -m wsol.evaluate scoremaps=DIR metadata=DIR [masks=DIR]
    protocol=wsolevaluation`` writes to metrics.json, exactly (same reader, same
    scoring).

    Args:
        maps: a folder of ``<image_id>.npy`` (docs/EVALUATE.md, mode 2), or a dict image
            id -> array (numpy or torch) in the same format: (resize, resize), floating,
            values in [0, 1]. `make_scoremap` makes one from a raw map the suite's way.
        metadata: one split's folder of wsolevaluation metadata (image_ids.txt,
            class_labels.txt, image_sizes.txt, localization.txt).
        masks: the folder the mask PNGs of localization.txt are relative to.
        cam_curve_interval, iou_thresholds, resize: as `WSOLEvaluation`.
        batch_size, num_workers: how the maps are read (a DataLoader's).

    Returns the metrics, percent; `WSOLError` names a missing or malformed map or line.
    """
    metric = WSOLEvaluationMetric(cam_curve_interval, iou_thresholds, resize)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise WSOLError(f"batch_size={batch_size!r}: must be an integer >= 1")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise WSOLError(f"num_workers={num_workers!r}: must be an integer >= 0")
    if not isinstance(maps, Mapping | str | os.PathLike):
        raise WSOLError(
            f"maps must be a folder of <image_id>.npy or a dict image id -> array, got {type(maps).__name__}"
        )
    if not isinstance(maps, Mapping):
        maps = require_dir(maps, "maps", "a folder of <image_id>.npy score maps")
    annotations = MetadataAnnotations(metadata, masks)
    ds = (
        _ArrayScoremaps(annotations, maps, metric.resize)
        if isinstance(maps, Mapping)
        else ScoremapDataset(annotations, maps, metric.resize)
    )
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
    for batch in loader:
        metric.update(metric.score_scoremaps(batch["scoremap"], batch, checked=True))
    return {k: float(v) for k, v in metric.compute().items()}
