"""Weights & Biases hooks (``logger=wandb``) and a reader for offline runs.

`log_run` is called by the main job at its end with whatever logger it built; for a
``pytorch_lightning.loggers.WandbLogger`` it adds what Lightning does not log by itself:

- the resolved config (``run.config``);
- the test metrics as the run's summary (``test/<metric>``; the job's evaluation already
  logged them as one history step) and the run's identity (``run/model``, ...);
- the CAM overlay figure ``cams.png`` as a ``wandb.Image`` (``test/cams``);
- the per-image predictions ``predictions.csv`` as a ``wandb.Table``
  (``test/predictions``; the first `MAX_TABLE_ROWS` rows, wandb's limit for a logged
  table; the CSV in the run folder has them all);

and finishes the W&B run, so that the next job of a multirun starts its own run (a
`WandbLogger` made while a run is active would reuse it). Any other logger: nothing.

Offline (the default of ``conf/logger/wandb.yaml``) everything goes to
``<output_dir>/wandb/offline-run-<time>-<id>/`` and is uploaded later with
``wandb sync <that folder>``. An offline run has no ``wandb-summary.json``: what was
logged is in its ``run-<id>.wandb`` file, which `read_offline_run` parses (a LevelDB-log
style record stream of ``wandb.proto.wandb_internal_pb2.Record`` messages), so tests
and scripts can check what a run holds without a server.

``wandb`` itself is imported only when a W&B logger is in use.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: rows of predictions.csv logged as a wandb.Table (wandb truncates logged tables here)
MAX_TABLE_ROWS = 10_000
#: metrics.json keys that name the run rather than measure it (logged as run/<key>)
_IDENTITY = {"model", "pool", "data", "localizer", "seed", "machine"}


def is_wandb_logger(logger: Any) -> bool:
    """True for a Lightning ``WandbLogger`` (checked without importing wandb)."""
    return any(c.__name__ == "WandbLogger" for c in type(logger).__mro__)


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and not (isinstance(v, float) and math.isnan(v))
    }


def log_run(logger: Any, cfg: Any, out: str | Path, metrics: Mapping[str, Any]) -> None:
    """Log the run's config, summary, ``cams.png`` and ``predictions.csv`` to W&B and
    finish the W&B run. A no-op unless ``logger`` is a ``WandbLogger``."""
    if not logger or not is_wandb_logger(logger):
        return
    import pandas as pd
    import wandb
    from omegaconf import OmegaConf

    out = Path(out)
    run = logger.experiment
    try:
        if cfg is not None:
            config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
            run.config.update(config, allow_val_change=True)
        identity = {k: v for k, v in metrics.items() if k in _IDENTITY or isinstance(v, str)}
        numbers = _numeric({k: v for k, v in metrics.items() if k not in identity})
        run.summary.update({f"test/{k}": v for k, v in numbers.items()})
        run.summary.update({f"run/{k}": v for k, v in identity.items()})
        media: dict[str, Any] = {}
        cams = out / "cams.png"
        if cams.is_file():
            media["test/cams"] = wandb.Image(
                str(cams),
                caption="test images: CAM, ground-truth box (green), predicted box (red)",
            )
        predictions = out / "predictions.csv"
        if predictions.is_file():
            frame = pd.read_csv(predictions, nrows=MAX_TABLE_ROWS, keep_default_na=False)
            media["test/predictions"] = wandb.Table(dataframe=frame)
            run.summary["test/predictions_rows_logged"] = len(frame)
        if media:
            run.log(media)
    finally:
        run.finish()
    log.info("W&B run %s written to %s", getattr(run, "id", "?"), getattr(run, "dir", "?"))


# ---- reading an offline run ----------------------------------------------------------
_HEADER = b":W&B"
_HEADER_LEN = 7  # ":W&B", magic 0xBEE1 (2 bytes), version (1 byte)
_BLOCK = 32 * 1024
_RECORD_HEADER = 7  # checksum (4), length (2), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(data: bytes) -> list[bytes]:
    """The records of a ``.wandb`` file: 32 KiB blocks of chunks (checksum, length, type,
    payload); a record longer than a block's rest is split into FIRST/MIDDLE/LAST chunks;
    a block's tail shorter than a chunk header is zero padding. Checksums not verified."""
    if data[:4] != _HEADER:
        raise ValueError("not a .wandb file (no ':W&B' header)")
    out: list[bytes] = []
    pending = b""
    pos = _HEADER_LEN
    while pos + _RECORD_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD_HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _RECORD_HEADER])
        if kind == 0 and length == 0:  # padding to the end of the block
            pos += left
            continue
        chunk = data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        pos += _RECORD_HEADER + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
            pending = b""
    return out


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def find_offline_runs(folder: str | Path) -> list[Path]:
    """The offline run folders (``offline-run-*``) under ``folder`` (e.g. a run's output
    folder, whose W&B files are in ``wandb/``), oldest first."""
    return sorted(Path(folder).rglob("offline-run-*/run-*.wandb"))


def read_offline_run(path: str | Path, timeout: float = 30.0) -> dict[str, Any]:
    """What an offline W&B run logged: ``{"config": {...}, "summary": {...},
    "history": [{...}, ...], "files": [...], "complete": bool}``. ``path``: the
    ``offline-run-*`` folder or its ``run-*.wandb`` file. Nested keys are joined with "/"
    (``test/cams/_type``).

    W&B's service may still be writing the file when ``run.finish()`` has returned: the
    file is read again until its final ``exit`` record is there (``complete``), for up to
    ``timeout`` seconds."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("run-*.wandb"))
        if not files:
            raise FileNotFoundError(f"no run-*.wandb file in {p}")
        p = files[0]
    deadline = time.monotonic() + timeout
    while True:
        out = _parse(p.read_bytes())
        if out["complete"] or time.monotonic() >= deadline:
            return out
        time.sleep(0.2)


def _parse(data: bytes) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    files_logged: list[str] = []
    complete = False
    for raw in _records(data):
        record = pb.Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # a record still being written
            break
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                config[_key(item)] = _value(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                summary[_key(item)] = _value(item.value_json)
            for item in record.summary.remove:
                summary.pop(_key(item), None)
        elif kind == "history":
            history.append({_key(i): _value(i.value_json) for i in record.history.item})
        elif kind == "files":
            files_logged += [f.path for f in record.files.files]
        elif kind == "exit":
            complete = True
    return {
        "config": config,
        "summary": summary,
        "history": history,
        "files": files_logged,
        "complete": complete,
    }
