"""`WSOLDataModule`: one LightningDataModule for every data set.

``dataset`` is a factory ``dataset(split=..., transform=...) -> Dataset`` (a Hydra
``_partial_``), so the readers know nothing of Lightning. Evaluation data sets are
never shuffled or padded; under DDP each process gets a disjoint share of the test
images (see `UnpaddedDistributedSampler`), so every image is scored exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from wsol.data.record import collate
from wsol.data.transforms import build_transform
from wsol.errors import WSOLError


class UnpaddedDistributedSampler(Sampler[int]):
    """Rank r of W gets indices r, r+W, r+2W, ... < N: disjoint shares that cover the data
    set once, unlike torch's DistributedSampler, which pads with repeated images."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        self.n, self.num_replicas, self.rank = len(dataset), num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self) -> int:
        return max(0, math.ceil((self.n - self.rank) / self.num_replicas))


class WSOLDataModule(pl.LightningDataModule):
    def __init__(
        self,
        dataset: Callable[..., Dataset],
        input_size: int,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        resize_size: int | None = None,
        crop: bool = True,
        flip: bool = True,
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str = "test",
        name: str = "data",
    ):
        super().__init__()
        self.dataset_factory = dataset
        self.input_size = int(input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.resize_size, self.crop, self.flip = resize_size, crop, flip
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.name = name
        self._datasets: dict[str, Dataset] = {}

    # ---- data sets -------------------------------------------------------------------
    def dataset(self, stage: str) -> Dataset:
        """The data set of ``stage`` (train / val / test), built once."""
        if stage not in self._datasets:
            split = self.splits[stage]
            if split is None:
                raise WSOLError(
                    f"data set {self.name} has no {stage} split (set data.{stage}_split)"
                )
            train = stage == "train"
            tf = build_transform(
                train,
                self.input_size,
                self.mean,
                self.std,
                resize_size=self.resize_size,
                crop=self.crop,
                flip=self.flip,
            )
            ds = self.dataset_factory(split=split, transform=tf)
            if len(ds) == 0:
                raise WSOLError(
                    f"data set {self.name}: the {split} split is empty; check data.root and the split's files"
                )
            self._datasets[stage] = ds
        return self._datasets[stage]

    @property
    def num_classes(self) -> int:
        return int(self.dataset("test").num_classes)

    @property
    def class_names(self) -> list[str]:
        ds = self.dataset("test")
        return list(getattr(ds, "class_names", [str(i) for i in range(self.num_classes)]))

    # ---- loaders ---------------------------------------------------------------------
    def _loader(
        self,
        ds: Dataset,
        batch_size: int,
        shuffle: bool,
        sampler: Sampler | None = None,
        drop_last=False,
    ):
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate,
            drop_last=drop_last,
        )

    def _eval_sampler(self, ds: Dataset) -> Sampler | None:
        trainer = getattr(self, "trainer", None)
        world = trainer.world_size if trainer is not None else 1
        if world <= 1:
            return None
        return UnpaddedDistributedSampler(ds, world, trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        return self._loader(ds, self.batch_size, shuffle=True, drop_last=len(ds) > self.batch_size)

    def val_dataloader(self):
        if self.splits["val"] is None:  # no val split: Lightning skips validation
            return []
        ds = self.dataset("val")
        return self._loader(ds, self.eval_batch_size, shuffle=False, sampler=self._eval_sampler(ds))

    def test_dataloader(self) -> DataLoader:
        ds = self.dataset("test")
        return self._loader(ds, self.eval_batch_size, shuffle=False, sampler=self._eval_sampler(ds))

    def eval_dataloader(self, stage: str) -> DataLoader:
        ds = self.dataset(stage)
        return self._loader(ds, self.eval_batch_size, shuffle=False, sampler=self._eval_sampler(ds))
