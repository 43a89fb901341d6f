"""`WSOLDataModule`: one LightningDataModule for every data set.

``dataset`` is a factory ``dataset(split=..., transform=...) -> Dataset`` (a Hydra
``_partial_``), so the readers know nothing of Lightning. Evaluation data sets are
never shuffled or padded; under DDP each process gets a disjoint share of the test
images (see `UnpaddedDistributedSampler`), so every image is scored exactly once.

Training is reproducible across a crash and ``resume=true`` (see `SeededTrainSampler`):
the order of the training images depends only on ``(seed, epoch)`` and each image's
random augmentation only on ``(seed, epoch, index)``, never on how many epochs this
process has run, how many loader workers there are, or what else drew random numbers;
a run resumed mid-epoch skips the batches the checkpoint had already trained on.
Both samplers are `DistributedSampler`s, so Lightning (``use_distributed_sampler``)
never replaces them with its own, which would pad the evaluation with repeated images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from wsol.data.record import collate
from wsol.data.transforms import TRAIN_TARGETS, build_transform
from wsol.errors import WSOLError


def _world(num_replicas: int | None = None, rank: int | None = None) -> tuple[int, int]:
    """(world size, rank): the given values, else the process group's, else (1, 0)."""
    if num_replicas is None or rank is None:
        if dist.is_available() and dist.is_initialized():
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
    return int(num_replicas or 1), int(rank or 0)


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank r of W gets indices r, r+W, r+2W, ... < N: disjoint shares that cover the data
    set once, unlike torch's DistributedSampler, which pads with repeated images.

    ``num_replicas``/``rank`` left None are read from the process group when the sampler
    is iterated (a loader made before DDP started still shares correctly); without one
    the sampler is sequential. A `DistributedSampler` subclass, so Lightning leaves it in
    place whatever ``use_distributed_sampler`` says."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        Sampler.__init__(self)
        self.dataset = dataset
        self.n = len(dataset)
        self._num_replicas, self._rank = num_replicas, rank
        self.shuffle, self.drop_last, self.seed, self.epoch = False, False, 0, 0

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return _world(self._num_replicas, self._rank)[0]

    @num_replicas.setter
    def num_replicas(self, value: int) -> None:
        self._num_replicas = value

    @property
    def rank(self) -> int:  # type: ignore[override]
        return _world(self._num_replicas, self._rank)[1]

    @rank.setter
    def rank(self, value: int) -> None:
        self._rank = value

    def __iter__(self) -> Iterator[int]:
        world, rank = _world(self._num_replicas, self._rank)
        return iter(range(rank, self.n, world))

    def __len__(self) -> int:
        world, rank = _world(self._num_replicas, self._rank)
        return max(0, math.ceil((self.n - rank) / world))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one training image's random augmentation in one epoch."""
    ss = np.random.SeedSequence([int(seed) % 2**32, int(epoch), int(index)])
    return int(ss.generate_state(1, np.uint64)[0] >> 1)


class SeededTrainSampler(DistributedSampler):
    """The training order: torch's `DistributedSampler` (a permutation drawn from
    ``seed + epoch``, this rank's share, padded to equal shares) whose items are
    ``(index, sample_seed(seed, epoch, index))`` for `SeededDataset`.

    ``skip`` (set when resuming mid-epoch) drops that many of the epoch's first items
    from the next iteration only; ``len()`` stays the whole epoch's, as Lightning counts
    the skipped batches as done."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.skip = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self.skip = self.skip, 0
        epoch = self.epoch
        for index in list(super().__iter__())[skip:]:
            yield (int(index), sample_seed(self.seed, epoch, int(index)))


class SeededDataset(Dataset):
    """A training data set indexed by ``(index, seed)``: the record of ``index`` with its
    random augmentation drawn from torch's generator seeded with ``seed`` (restored after),
    the same in the main process and in any loader worker."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class HeldOut(Dataset):
    """The items ``indices`` of ``dataset`` (a part of one split; `WSOLDataModule`'s
    ``holdout``); every other attribute is the whole data set's (classes, annotation
    kind)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]

    def __getattr__(self, name: str):
        if name in ("dataset", "indices"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def resume_position(trainer) -> tuple[int, int]:
    """(epoch, batches of it already trained) where ``trainer.fit`` goes on: (0, 0) for a
    fresh run; after a restored checkpoint the fit loop's counters say where it stopped."""
    fit_loop = getattr(trainer, "fit_loop", None)
    if fit_loop is None:
        return 0, 0
    epochs = fit_loop.epoch_progress.current
    batches = fit_loop.epoch_loop.batch_progress.current
    epoch = int(epochs.processed)
    # an epoch that started but was not processed: a checkpoint from inside it
    mid_epoch = int(epochs.started) > epoch
    done = int(batches.processed) if mid_epoch else 0
    return epoch, done


class WSOLDataModule(pl.LightningDataModule):
    def __init__(
        self,
        dataset: Callable[..., Dataset],
        input_size: int,
        eval_input_size: int | None = None,
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
        seed: int | None = None,
        train_targets: str = "labels",
        holdout: float = 0.0,
        holdout_seed: int = 0,
    ):
        super().__init__()
        self.dataset_factory = dataset
        self.input_size = int(input_size)
        # val and test images are resized to this (None: input_size); training at a lower
        # resolution than testing is cheaper and, for a GAP network, localizes better
        self.eval_input_size = int(eval_input_size or input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.resize_size, self.crop, self.flip = resize_size, crop, flip
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        # what a training batch carries besides the labels: "foreground" (the mask where an
        # image has one, else its boxes filled) or "boxes" (the boxes filled) as the batch's
        # per-pixel ``foreground``, for methods trained on it (method=fsl sets it)
        if train_targets not in TRAIN_TARGETS:
            raise WSOLError(
                f"data.train_targets={train_targets!r}: must be one of {', '.join(TRAIN_TARGETS)}"
            )
        self.train_targets = train_targets
        # a split that is both train and val (method=fsl trains on val): the fraction of
        # it kept out of training and used as val (selection), drawn once by holdout_seed
        holdout = float(holdout)
        if not 0.0 <= holdout < 1.0:
            raise WSOLError(f"data.holdout={holdout}: must be in [0, 1)")
        if holdout and train_split != val_split:
            raise WSOLError(
                f"data.holdout={holdout}: holds out part of a split that is both train and "
                f"val, but data.train_split={train_split} and data.val_split={val_split}"
            )
        self.holdout, self.holdout_seed = holdout, int(holdout_seed)
        self.name = name
        # the training order's seed; None: the run's seed (pl.seed_everything's PL_GLOBAL_SEED)
        self.seed = seed
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
                self.input_size if train else self.eval_input_size,
                self.mean,
                self.std,
                resize_size=self.resize_size,
                crop=self.crop,
                flip=self.flip,
                foreground=self.train_targets if self.train_targets != "labels" else None,
            )
            ds = self.dataset_factory(split=split, transform=tf)
            if len(ds) == 0:
                raise WSOLError(
                    f"data set {self.name}: the {split} split is empty; check data.root and the split's files"
                )
            self._datasets[stage] = self._part(stage, ds)
        return self._datasets[stage]

    def _part(self, stage: str, ds: Dataset) -> Dataset:
        """``ds`` itself, or with ``holdout`` its part for ``stage``: val the held-out
        ``round(holdout * n)`` images of one fixed permutation, train the others."""
        if not self.holdout or stage == "test":
            return ds
        n = len(ds)
        k = round(self.holdout * n)
        if not 0 < k < n:
            raise WSOLError(
                f"data.holdout={self.holdout}: holds out {k} of the {n} images of the "
                f"{self.splits[stage]} split; both parts need at least one"
            )
        order = np.random.RandomState(self.holdout_seed).permutation(n)
        return HeldOut(ds, sorted(order[:k] if stage == "val" else order[k:]))

    def eval_view(self, stage: str) -> Dataset:
        """The data set of ``stage`` as evaluation sees it: whole images resized to the
        input size, no augmentation (for the training split too), so its original boxes
        and masks lie where the image shows the object."""
        if stage != "train":
            return self.dataset(stage)
        tf = build_transform(False, self.eval_input_size, self.mean, self.std)
        return self._part("train", self.dataset_factory(split=self.splits["train"], transform=tf))

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

    def _eval_sampler(self, ds: Dataset) -> Sampler:
        """Unpadded shares under DDP; sequential in one process (and never replaced)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            return UnpaddedDistributedSampler(ds, trainer.world_size, trainer.global_rank)
        return UnpaddedDistributedSampler(ds)  # the process group's, if any, when iterated

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        return _world()

    def train_sampler(
        self, world: int | None = None, rank: int | None = None
    ) -> SeededTrainSampler:
        ds = self.dataset("train")
        if world is None or rank is None:
            world, rank = self._world()
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        return SeededTrainSampler(ds, world, rank, seed)

    def steps_per_epoch(self, world: int = 1) -> int:
        """Training batches per epoch of each of ``world`` processes."""
        share = math.ceil(len(self.dataset("train")) / max(1, world))
        # a last partial batch is dropped unless it is the only one
        return share // self.batch_size if share > self.batch_size else 1

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        sampler = self.train_sampler()
        trainer = getattr(self, "trainer", None)
        if trainer is not None:  # where a resumed fit goes on (see resume_position)
            epoch, done = resume_position(trainer)
            sampler.set_epoch(epoch)
            sampler.skip = done * self.batch_size
        return self._loader(
            SeededDataset(ds),
            self.batch_size,
            shuffle=False,
            sampler=sampler,
            drop_last=len(sampler) > self.batch_size,
        )

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
