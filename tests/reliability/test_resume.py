"""Crash and resume: a real ``python -m wsol.run`` killed mid-training (SIGKILL: nothing
is saved at the kill; SIGTERM: Lightning stops after the batch and the suite saves the
moment) and started again with ``resume=true`` ends with the metrics, predictions and
weights of the same run left alone; and the same config run twice gives the same files.

What makes it exact (see wsol/data/datamodule.py and wsol/models/module.py): the
training order depends on (seed, epoch) only, each image's augmentation on (seed,
epoch, index), the network's own randomness on (seed, step); optimiser, schedule and
loop counters come back from the checkpoint; a resumed epoch skips the batches the
checkpoint had trained on."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY, compose_config
from wsol.pipeline import VOLATILE_METRICS, train_and_evaluate

#: 3 epochs of 12 steps (48 images, batch 4): a kill lands inside training
RESUME = [*TINY, "trainer.max_epochs=3", "data.batch_size=4"]
#: what differs between any two runs: wall-clock times and the machine's description
VOLATILE = VOLATILE_METRICS


def stable_metrics(folder: Path) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in VOLATILE}


def net_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith("net.")}


def assert_same_run(a: Path, b: Path) -> None:
    assert stable_metrics(b) == stable_metrics(a)
    assert (b / "predictions.csv").read_bytes() == (a / "predictions.csv").read_bytes()
    assert (b / "curves.csv").read_bytes() == (a / "curves.csv").read_bytes()
    wa, wb = (
        net_weights(a / "checkpoints" / "last.ckpt"),
        net_weights(b / "checkpoints" / "last.ckpt"),
    )
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def uninterrupted(cli, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    r = cli.run("wsol.run", [*RESUME, f"paths.output_dir={out}"])
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.parametrize(
    "sig, delay",
    [(signal.SIGKILL, 0.0), (signal.SIGTERM, 0.0)],
    ids=["sigkill_at_first_checkpoint", "sigterm_after_first_checkpoint"],
)
def test_killed_run_resumed_equals_the_uninterrupted_run(cli, uninterrupted, tmp_path, sig, delay):
    out = tmp_path / "run"
    args = [*RESUME, f"paths.output_dir={out}"]
    first = out / "checkpoints" / "last.ckpt"
    r = cli.run(
        "wsol.run", args, kill={"when_exists": str(first), "signal": int(sig), "delay": delay}
    )
    assert r.killed, "the run ended before the kill"
    assert not (out / "metrics.json").exists(), "the kill came after the run finished"
    if sig == signal.SIGKILL:
        assert r.returncode == -signal.SIGKILL
    else:  # Lightning stops after the batch; the suite saves the moment and exits 128+15
        assert r.returncode == 128 + signal.SIGTERM, r.stderr[-3000:]
        assert "resume=true" in r.stdout + r.stderr
    state = torch.load(first, map_location="cpu", weights_only=True)
    assert state["global_step"] >= 12  # at least the first epoch is kept

    resumed = cli.run("wsol.run", [*args, "resume=true"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing from" in resumed.stderr + resumed.stdout
    assert_same_run(uninterrupted, out)
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.part"))
    # the training log of the epochs before the kill is kept beside the new one
    assert (out / "logs" / "metrics.before_resume_1.csv").is_file()
    assert (out / "logs" / "metrics.csv").is_file()


def test_resume_without_a_checkpoint_trains_from_the_start(cli, uninterrupted, tmp_path):
    r = cli.run("wsol.run", [*RESUME, f"paths.output_dir={tmp_path}", "resume=true"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(uninterrupted, tmp_path)


def test_same_config_twice_gives_the_same_files(tmp_path):
    """Determinism on the CPU through the plain function (two runs, same seed)."""
    runs = []
    for name in ("a", "b"):
        cfg = compose_config([*TINY, f"paths.output_dir={tmp_path / name}", "logger=none"])
        train_and_evaluate(cfg)
        runs.append(tmp_path / name)
    a, b = runs
    assert stable_metrics(a) == stable_metrics(b)
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    assert (a / "curves.csv").read_bytes() == (b / "curves.csv").read_bytes()


@pytest.mark.parametrize("workers", [0, 1])
def test_training_batches_depend_only_on_seed_epoch_and_position(workers):
    """The batches of epoch e: the same whatever ran before in the process (global RNG
    state, earlier epochs) and however many loader workers; a resumed epoch (``skip``)
    continues with exactly the batches that were left."""
    import numpy as np

    from wsol.pipeline import build_data

    cfg = compose_config([*TINY, f"data.num_workers={workers}", "data.persistent_workers=false"])
    dm = build_data(cfg)
    dm.seed = 3

    def epoch(e: int, noise: int, skip: int = 0):
        torch.manual_seed(noise)
        np.random.seed(noise)  # noqa: NPY002  (the legacy global state is the point)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(e)
        loader.sampler.skip = skip
        return [(b["index"].tolist(), b["image"]) for b in loader]

    a, b = epoch(2, 0), epoch(2, 12345)
    assert [i for i, _ in a] == [i for i, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert [i for i, _ in epoch(1, 0)] != [i for i, _ in a]  # another epoch, another order
    rest = epoch(2, 99, skip=dm.batch_size)
    assert [i for i, _ in rest] == [i for i, _ in a[1:]]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(rest, a[1:]))


def test_resume_takes_the_newest_of_last_and_the_slurm_requeue_checkpoint(tmp_path, tiny_ckpt):
    """Lightning's SLURM plugin saves ``<run>/hpc_ckpt_N.ckpt`` on its requeue signal;
    ``resume=true`` continues from whichever of it and ``checkpoints/last.ckpt`` is newer."""
    import os
    import shutil

    from wsol.pipeline import resume_checkpoint

    assert resume_checkpoint(tmp_path) is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    shutil.copy(tiny_ckpt, last)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    shutil.copy(tiny_ckpt, hpc)
    os.utime(last, ns=(10**18, 10**18))
    os.utime(hpc, ns=(2 * 10**18, 2 * 10**18))
    assert resume_checkpoint(tmp_path) == str(hpc)
    os.utime(last, ns=(3 * 10**18, 3 * 10**18))
    assert resume_checkpoint(tmp_path) == str(last)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cutmix", "has"])
def test_killed_run_with_a_method_resumed_equals_the_uninterrupted_run(cli, tmp_path, method):
    """A method's random draws (CutMix's box and lambda, HaS's squares) come from the
    step-seeded generator: a run killed mid-training and resumed is the same run."""
    args = [*RESUME, f"method={method}"]
    straight = tmp_path / "straight"
    r = cli.run("wsol.run", [*args, f"paths.output_dir={straight}"])
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "run"
    first = out / "checkpoints" / "last.ckpt"
    r = cli.run(
        "wsol.run",
        [*args, f"paths.output_dir={out}"],
        kill={"when_exists": str(first), "signal": int(signal.SIGKILL), "delay": 0.0},
    )
    assert r.killed and not (out / "metrics.json").exists()
    resumed = cli.run("wsol.run", [*args, f"paths.output_dir={out}", "resume=true"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(straight, out)
