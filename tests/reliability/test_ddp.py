"""Exact DDP evaluation: two CPU processes (gloo, ``trainer=ddp``) give the numbers of one
process on a test split whose size is not divisible by 2 and whose shares end in uneven
numbers of batches: every image counted exactly once (no padding sampler), the
protocols' integer states summed, predictions.csv merged once in index order."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import TINY
from tests.reliability.test_resume import VOLATILE

#: 25 test images in batches of 4: shares of 13 and 12 images, 4 and 3 batches
DATA = [
    *TINY[1:],
    "data.dataset.num_classes=3",
    "data.dataset.test_size=25",
    "data.eval_batch_size=4",
    "protocol=[cam2016,cam2016_official,wsolevaluation]",
]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


def metrics(folder: Path) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in VOLATILE}


def test_two_processes_evaluate_exactly_like_one(cli, tiny_ckpt, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = cli.run("wsol.evaluate", [f"ckpt={tiny_ckpt}", *DATA, f"paths.output_dir={one}"])
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = cli.run(
        "wsol.evaluate", [f"ckpt={tiny_ckpt}", *DATA, *DDP, f"paths.output_dir={two}"], timeout=300
    )
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "MEMBER: 2/2" in r2.stdout + r2.stderr  # two processes really ran

    m1, m2 = metrics(one), metrics(two)
    assert m1.keys() == m2.keys()
    for key in m1:
        assert m2[key] == m1[key], key  # equal, not close
    p1, p2 = pd.read_csv(one / "predictions.csv"), pd.read_csv(two / "predictions.csv")
    assert p2["index"].tolist() == list(range(25))  # each image once, in index order
    pd.testing.assert_frame_equal(p1, p2, check_exact=True)
    assert (one / "curves.csv").read_bytes() == (two / "curves.csv").read_bytes()
    assert (two / "cams.png").is_file()
    assert not list(two.glob(".*.part")) and not list(two.glob("*.tmp"))


@pytest.mark.slow
def test_ddp_training_and_evaluation_through_wsol_run(cli, tmp_path):
    """Training with two processes (each its own seeded shard of the training order),
    then evaluation on both, process 0 writing: every test image once, one metrics.json."""
    out = tmp_path / "run"
    args = [*TINY, "data.dataset.test_size=25", "data.eval_batch_size=4", "data.batch_size=8",
            "trainer.max_epochs=2", *DDP, f"paths.output_dir={out}"]  # fmt: skip
    r = cli.run("wsol.run", args, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert 0 <= m["gt_known_loc"] <= 100
    p = pd.read_csv(out / "predictions.csv")
    assert p["index"].tolist() == list(range(25))
    assert (out / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(("n", "world"), [(25, 2), (7, 3), (2, 4), (1, 2)])
def test_unpadded_shares_cover_every_image_once(n, world):
    from wsol.data.datamodule import UnpaddedDistributedSampler

    shares = [list(UnpaddedDistributedSampler(list(range(n)), world, r)) for r in range(world)]
    assert sorted(i for s in shares for i in s) == list(range(n))
    assert [len(UnpaddedDistributedSampler(list(range(n)), world, r)) for r in range(world)] == [
        len(s) for s in shares
    ]


def test_lightning_keeps_our_samplers(monkeypatch):
    """With ``use_distributed_sampler=true`` (Lightning's default) a DDP trainer swaps any
    sampler that is not a DistributedSampler for its own, which pads the test split with
    repeated images; ours are DistributedSamplers, so it leaves them alone."""
    import lightning_fabric.utilities.rank_zero as fabric_rank_zero
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from wsol.data.datamodule import SeededTrainSampler, UnpaddedDistributedSampler

    monkeypatch.setattr(
        fabric_rank_zero.rank_zero_only, "rank", fabric_rank_zero.rank_zero_only.rank
    )
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False,
                         use_distributed_sampler=True, enable_progress_bar=False)  # fmt: skip
    ds = list(range(25))
    for sampler in (UnpaddedDistributedSampler(ds, 2, 1), SeededTrainSampler(ds, 2, 1, seed=0)):
        loader = DataLoader(ds, sampler=sampler, batch_size=4)
        assert not trainer._data_connector._requires_distributed_sampler(loader)
    plain = DataLoader(ds, batch_size=4)
    assert trainer._data_connector._requires_distributed_sampler(plain)  # the check is live
