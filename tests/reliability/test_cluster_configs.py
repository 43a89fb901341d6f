"""The cluster configs, composed and resolved without launching anything:
``hydra/launcher=slurm`` (submitit) with ``trainer=ddp_multinode`` (Lightning DDP across
nodes), down to the sbatch script submitit would submit and the Trainer Lightning would
build inside a SLURM job."""

from __future__ import annotations

import os
import stat

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import wsol  # noqa: F401  (resolvers)
from tests.helpers import CONF


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="test"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


CLUSTER = ["hydra/launcher=slurm", "trainer=ddp_multinode"]


def test_slurm_launcher_and_multinode_trainer_resolve():
    cfg = compose_with_hydra(CLUSTER)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert trainer["strategy"] == "ddp" and trainer["accelerator"] == "gpu"
    assert trainer["num_nodes"] == 2 and trainer["devices"] == 8
    assert trainer["use_distributed_sampler"] is False  # our samplers shard
    assert trainer["sync_batchnorm"] is True
    # one SLURM task per Lightning process, one GPU each
    assert launcher["nodes"] == trainer["num_nodes"]
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == trainer["devices"]
    assert launcher["timeout_min"] == 1440 and launcher["mem_gb"] == 64
    assert launcher["partition"] is None  # the cluster's default
    # Lightning's SLURM plugin saves hpc_ckpt_N.ckpt and requeues on SIGUSR1
    assert launcher["additional_parameters"] == {"signal": "USR1@120"}
    assert launcher["signal_delay_s"] == 120


def test_overrides_follow_into_the_launcher():
    cfg = compose_with_hydra([*CLUSTER, "trainer.devices=4", "trainer.num_nodes=3",
                              "hydra.launcher.partition=a100", "hydra.launcher.signal_delay_s=300"])  # fmt: skip
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (3, 4, 4)
    assert launcher["partition"] == "a100"
    assert launcher["additional_parameters"] == {"signal": "USR1@300"}


def test_single_node_ddp_config():
    cfg = compose_with_hydra(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    t = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert (t["strategy"], t["devices"], t["num_nodes"], t["use_distributed_sampler"]) == (
        "ddp",
        2,
        1,
        False,
    )


def test_the_sbatch_script_submitit_would_submit(tmp_path, monkeypatch):
    """Hydra's submitit launcher hands its config to submitit's SLURM executor (as in
    hydra_plugins.hydra_submitit_launcher: init keys, then the others prefixed slurm_);
    the script must ask for the nodes, tasks, GPUs, time and the requeue signal."""
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake = tmp_path / "bin" / "srun"  # submitit checks that srun exists; nothing runs
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    cfg = compose_with_hydra([*CLUSTER, "hydra.launcher.partition=gpu"])
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    params.pop("submitit_folder")
    executor = submitit.AutoExecutor(
        cluster="slurm",
        folder=tmp_path / "jobs",
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m wsol.run", "uid")
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR1@120",
        "#SBATCH --time=1440",
        "#SBATCH --mem=64GB",
    ):
        assert line in script.splitlines(), (line, script)
    assert "srun" in script


def test_lightning_detects_slurm_with_the_multinode_trainer(monkeypatch, tmp_path):
    """Inside a SLURM job (its variables set by hand here) the multi-node trainer finds
    its rank and world from SLURM and launches no processes itself."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    env = {
        "SLURM_NTASKS": "16",
        "SLURM_NTASKS_PER_NODE": "8",
        "SLURM_JOB_ID": "1234",
        "SLURM_JOB_NAME": "wsol",
        "SLURM_NODELIST": "node[01-02]",
        "SLURM_PROCID": "9",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # Lightning records the rank process-wide; this test's fake rank 9 must not outlive it
    import lightning_fabric.utilities.rank_zero as fabric_rank_zero
    import pytorch_lightning.utilities.rank_zero as pl_rank_zero

    for mod in (fabric_rank_zero, pl_rank_zero):
        monkeypatch.setattr(mod.rank_zero_only, "rank", mod.rank_zero_only.rank)
    cfg = compose_with_hydra([*CLUSTER, "trainer.accelerator=cpu", "trainer.precision=32-true",
                              f"paths.output_dir={tmp_path}", "trainer.sync_batchnorm=false"])  # fmt: skip
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    cluster = trainer._accelerator_connector.cluster_environment
    assert isinstance(cluster, SLURMEnvironment) and cluster.auto_requeue
    assert cluster.creates_processes_externally  # srun starts the processes
    assert (trainer.num_nodes, trainer.world_size, trainer.global_rank, trainer.local_rank) == (
        2,
        16,
        9,
        1,
    )


def test_rank_is_restored_after_the_slurm_test():
    from pytorch_lightning.utilities import rank_zero_only

    assert rank_zero_only.rank == 0
