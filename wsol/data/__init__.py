"""Data sets (synthetic, CUB, wsolevaluation metadata, ImageNet), box-aware transforms and
the DataModule. Imports nothing else of wsol but the leaf modules errors and io.

`WSOLDataModule` (Lightning) is loaded on first use: the readers import without it."""

from __future__ import annotations

import importlib

from wsol.data.record import Record, collate

__all__ = ["Record", "UnpaddedDistributedSampler", "WSOLDataModule", "collate"]


def __getattr__(name: str):
    if name in ("UnpaddedDistributedSampler", "WSOLDataModule"):
        return getattr(importlib.import_module("wsol.data.datamodule"), name)
    raise AttributeError(f"module 'wsol.data' has no attribute {name!r}")
