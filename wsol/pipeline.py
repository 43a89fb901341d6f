"""The main job as plain functions (tests call them without the CLI):
`train_and_evaluate(cfg)` builds everything from the composed config, trains with
Lightning, evaluates on the test split (a search trial, ``search=true``: on the val
split only, docs/SELECTION.md) and writes the run's outputs."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from wsol.errors import WSOLError
from wsol.evaluation import EvalModule
from wsol.io import write_csv, write_text
from wsol.job import (
    finish,
    precision_record,
    resolve_output_dir,
    resolve_precision,
    run_identity,
    selected_protocols,
)
from wsol.models.module import AtomicCheckpointIO, CheckpointOnSigterm, ClassifierModule, StepSeed
from wsol.report.metrics import read_metrics
from wsol.report.wandb import log_run as log_run_to_wandb

log = logging.getLogger(__name__)


# ---- config --------------------------------------------------------------------------
def build_data(cfg: DictConfig):
    dm = instantiate(cfg.data)
    # a search trial never builds the test split, not even to count the classes
    n = dm.dataset("val").num_classes if cfg.get("search") else dm.num_classes
    with open_dict(cfg):
        cfg.model.num_classes = int(n)
    return dm


def build_method(cfg: DictConfig):
    """The training method (``method=NAME``; CAM when the config has none)."""
    from wsol.methods import Method

    return instantiate(cfg.method) if cfg.get("method") is not None else Method()


def build_net(cfg: DictConfig, method=None):
    """The network of ``cfg.model`` with ``method``'s layers installed."""
    net = instantiate(cfg.model)
    return (method or build_method(cfg)).prepare(net)


def build_classifier(cfg: DictConfig, net, steps_per_epoch: int, method=None) -> ClassifierModule:
    optim = cfg.optim
    with open_dict(cfg):
        sched = optim.get("scheduler")
        if sched is not None and OmegaConf.is_missing(sched, "total_steps"):
            sched.total_steps = int(cfg.trainer.max_epochs) * max(1, steps_per_epoch)
    scheduler = instantiate(optim.scheduler) if optim.get("scheduler") is not None else None
    return ClassifierModule(
        net,
        optimizer=instantiate(optim.optimizer),
        scheduler=scheduler,
        scheduler_interval=optim.get("interval", "epoch"),
        label_smoothing=optim.get("label_smoothing", 0.0),
        model_config=OmegaConf.to_container(cfg.model, resolve=True),
        channels_last=bool(cfg.get("channels_last", False)),
        method=method,
    )


def resume_checkpoint(out: Path) -> str | None:
    """The newest checkpoint to resume ``out``'s training from: ``checkpoints/last.ckpt``
    (every epoch's end, and the moment of a SIGTERM) or a ``hpc_ckpt_N.ckpt`` that
    Lightning's SLURM plugin wrote on its requeue signal; None when there is none."""
    candidates = [out / "checkpoints" / "last.ckpt", *out.glob("hpc_ckpt_*.ckpt")]
    found = [p for p in candidates if p.is_file()]
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime_ns)
    try:  # mmap: the file's structure is checked without reading every tensor
        torch.load(newest, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        from wsol.models.weights import describe_load_error

        raise WSOLError(
            f"resume=true: {newest} is not a readable checkpoint: {describe_load_error(newest, e)}; "
            "delete it to resume from an older one, or set resume=false"
        ) from None
    return str(newest)


def keep_csv_log(logger) -> None:
    """Lightning's CSVLogger deletes ``logs/metrics.csv`` when it starts; before a resumed
    run, the earlier epochs' log is kept as ``logs/metrics.before_resume_N.csv``."""
    from pytorch_lightning.loggers import CSVLogger

    if not isinstance(logger, CSVLogger) or rank_zero_only.rank != 0:
        return
    log_file = Path(logger.log_dir) / "metrics.csv"
    if log_file.is_file():
        n = 1
        while (kept := log_file.with_name(f"metrics.before_resume_{n}.csv")).exists():
            n += 1
        log_file.replace(kept)


# ---- the job -------------------------------------------------------------------------
def train_and_evaluate(cfg: DictConfig, net_state: dict | None = None) -> dict:
    """Train (unless ``train=false``), evaluate on the test split (``search=true``: on
    the val split only, recording the objective), write the outputs. ``net_state``: a
    state dict loaded strictly into the built network, method layers included (the
    test of a search's best trial, `wsol.selection`). Returns the metrics written to
    metrics.json."""
    from wsol.selection import add_objective, check_selection

    t0 = time.time()
    check_selection(cfg)  # nothing chosen on the test split: refused before anything is read
    out = resolve_output_dir(cfg)
    if cfg.get("skip_done") and (out / "metrics.json").is_file():
        # skip_done=true (wsol.study): a finished run (its metrics.json exists) is not rerun
        log.info("skip_done=true: %s/metrics.json exists; not running again", out)
        return read_metrics(out / "metrics.json")
    training = bool(cfg.get("train", True))
    # checked before anything is written: a damaged checkpoint is an error, not a crash
    resume_from = resume_checkpoint(out) if training and cfg.get("resume") else None
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    resolve_precision(cfg, log_line=training)
    # settings checked before the data and the network are built
    localizer = instantiate(cfg.localizer)
    protocols = selected_protocols(cfg)
    method = build_method(cfg)
    dm = build_data(cfg)
    net = build_net(cfg, method)
    if net_state is not None:
        net.load_state_dict(net_state)
    if rank_zero_only.rank == 0:
        write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    if resume_from is not None:
        keep_csv_log(logger)
    train_time = 0.0
    if training:
        ckpt_dir = out / "checkpoints"
        last = ckpt_dir / "last.ckpt"
        callbacks = [
            pl.callbacks.ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="epoch{epoch:03d}",
                auto_insert_metric_name=False,
                save_last=True,
                save_top_k=1,
                every_n_epochs=1,
            ),
            StepSeed(int(cfg.seed)),  # dropout & co. from (seed, step): resumable anywhere
            CheckpointOnSigterm(last),  # a SIGTERM mid-epoch loses nothing
        ]
        trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # no torn checkpoints
        # the schedule's length: batches per epoch of each process
        module = build_classifier(cfg, net, dm.steps_per_epoch(trainer.world_size), method)
        if cfg.get("resume") and resume_from is None:
            log.info("resume=true but %s does not exist: training from the start", last)
        elif resume_from is not None:
            log.info("resume=true: continuing from %s", resume_from)
        t1 = time.time()
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=True)
        except SIGTERMException:
            log.warning("terminated by SIGTERM; run again with resume=true to continue")
            raise SystemExit(128 + signal.SIGTERM) from None
        train_time = time.time() - t1

    metrics = evaluate_network(cfg, net, dm, localizer, protocols, out, logger=logger)
    search = bool(cfg.get("search"))
    if search:  # the value the sweeper maximises; a missing key fails the trial here
        add_objective(cfg, metrics, dm.dataset("val"))
        metrics.update(search=True, split="val")
    elif cfg.get("unsafe_select_on_test"):  # asked for: a sweeper may select on test
        add_objective(cfg, metrics, dm.dataset("test"), prefix="")
    if rank_zero_only.rank != 0:  # under DDP every process evaluates, process 0 writes
        return metrics
    metrics.update(run_identity(cfg, localizer.name))
    metrics["train_seconds"] = round(train_time, 1)
    metrics.update(precision_record(cfg, training))
    split = (
        f"val split, a search trial: {metrics['objective']} = {metrics['objective_value']:.2f}"
        if search
        else "test split"
    )
    title = f"\n{cfg.model.name} pool={cfg.pool.name} on {metrics['data']} ({split}): {out}"
    finish(cfg, out, metrics, t0, title)
    log_run_to_wandb(logger, cfg, out, metrics)  # logger=wandb: config, cams.png, predictions
    return metrics


#: metrics.json keys that measure wall time or name the machine: two identical runs differ
#: only there
VOLATILE_METRICS = frozenset(
    {"train_seconds", "total_seconds", "test_seconds", "test_seconds_per_image", "machine"}
)


def evaluate_network(
    cfg: DictConfig, net, dm, localizer, protocols: dict, out: Path, logger=None
) -> dict:
    """Evaluate ``net`` on the test split (after choosing the protocols' operating
    thresholds on val when ``val_thresholds=true``); writes predictions.csv, curves.csv
    and cams.png; returns the metrics. A search trial (``search=true``) scores the val
    split only and returns its metrics as ``val_*``: the test split is never built."""
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("max_epochs", None)
    # scores are computed from fp32 maps whatever precision trained the network
    trainer_cfg["precision"] = "32-true"
    eval_trainer = instantiate(
        trainer_cfg,
        logger=False,
        callbacks=[],
        inference_mode=False,
        enable_checkpointing=False,
        _convert_="all",
    )
    extra: dict[str, float] = {}
    search = bool(cfg.get("search"))
    if search or (cfg.get("val_thresholds") and protocols):
        # the val pass: a search trial's scores, and each protocol's operating thresholds
        # chosen on val (test is reported at them)
        val_module = EvalModule(
            net, localizer, {k: p.val_copy() for k, p in protocols.items()}, output_dir=None
        )
        eval_trainer.test(val_module, dataloaders=dm.eval_dataloader("val"), verbose=False)
        for name, p in protocols.items():
            chooser = (
                getattr(val_module.protocols[name], "chosen_thresholds", None)
                if name in val_module.protocols
                else None
            )
            p.operating_thresholds = (chooser() or None) if chooser else None
        extra.update({f"val_{k}": v for k, v in val_module.results.items()})
    if search:
        if logger:
            logger.log_metrics({f"val/{k[4:]}": v for k, v in extra.items()})
        torch.set_grad_enabled(True)
        return extra
    module = EvalModule(
        net,
        localizer,
        protocols,
        output_dir=out,
        figure_images=int(cfg.get("figure_images", 16)),
        class_names=dm.class_names,
    )
    t_test = time.perf_counter()
    try:
        eval_trainer.test(module, datamodule=dm, verbose=False)
    except BaseException:
        module.discard()  # no part file of predictions.csv left behind
        raise
    curves = module.curves()  # every process: the states are summed across them
    if curves is not None and eval_trainer.global_rank == 0:
        write_csv(out / "curves.csv", curves)
    metrics = dict(module.results)
    metrics.update(extra)
    # the test pass's wall time (forward passes, maps, boxes, scoring, figure) per image:
    # what a map maker costs (the study of the post-hoc map makers reports it)
    test_seconds = time.perf_counter() - t_test
    metrics["test_seconds"] = round(test_seconds, 2)
    n_test = len(dm.dataset("test"))
    if n_test:
        metrics["test_seconds_per_image"] = round(test_seconds / n_test, 4)
    if logger:
        logger.log_metrics({f"test/{k}": v for k, v in metrics.items()})
    torch.set_grad_enabled(True)
    return metrics
