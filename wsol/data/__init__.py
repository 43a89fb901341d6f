"""Data sets (synthetic, CUB, wsolevaluation metadata, ImageNet), box-aware transforms and
the DataModule. Imports nothing else of wsol but the leaf modules errors and io."""

from wsol.data.datamodule import UnpaddedDistributedSampler, WSOLDataModule
from wsol.data.record import Record, collate

__all__ = ["Record", "UnpaddedDistributedSampler", "WSOLDataModule", "collate"]
