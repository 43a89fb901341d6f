"""Evaluation streams: scoring 50,000 images holds nothing per image. Every protocol's
state (and every container the metric object holds) has the same size after a few
batches as after many; EvalModule keeps at most ``figure_images`` samples and streams
the rows of predictions.csv to disk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from tests.helpers import TINY, compose_config
from tests.protocols.helpers import make_batch
from wsol.evaluation import EvalModule
from wsol.pipeline import build_data, build_net, selected_protocols
from wsol.protocols import (
    Cam2016Metric,
    Cam2016OfficialMetric,
    ClassificationMetric,
    WSOLEvaluationMetric,
)


def batches(n_batches: int, bsz: int = 4, seed: int = 0):
    """Random raw maps (B, 6, 7, 7) with boxes and (mostly) masks, generated lazily."""
    rng = np.random.default_rng(seed)
    for k in range(n_batches):
        h, w = int(rng.integers(24, 48)), int(rng.integers(24, 48))
        maps = torch.as_tensor(rng.standard_normal((bsz, 6, 7, 7)).astype(np.float32)).exp()
        labels = rng.integers(0, 10, bsz)
        classes = np.concatenate([labels[:, None], rng.integers(0, 10, (bsz, 5))], axis=1)
        boxes = []
        for _ in range(bsz):
            x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
            boxes.append([[x0, y0, rng.integers(x0 + 1, w + 1), rng.integers(y0 + 1, h + 1)]])
        masks = [rng.choice(np.array([0, 1, 255], dtype=np.uint8), (h, w)) for _ in range(bsz)]
        batch = make_batch(labels, boxes, [[h, w]] * bsz, masks=masks, start=k * bsz)
        yield maps, torch.as_tensor(classes), batch


def footprint(metric) -> dict[str, object]:
    """Shape and dtype of every state, and the size of every container the object holds
    (a list that grows per image would show here)."""
    out: dict[str, object] = {
        f"state:{k}": (tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else ("list", len(v))
        for k, v in metric.metric_state.items()
    }
    for k, v in vars(metric).items():
        if k.startswith("_forward_cache") or k in ("_computed",):
            continue
        if isinstance(v, (list, tuple, dict, set)):
            out[f"attr:{k}"] = len(v)
        elif isinstance(v, (np.ndarray, torch.Tensor)):
            out[f"attr:{k}"] = tuple(v.shape)
    return out


@pytest.mark.parametrize(
    "factory",
    [
        ClassificationMetric,
        Cam2016Metric,
        Cam2016OfficialMetric,
        lambda: WSOLEvaluationMetric(cam_curve_interval=0.01),
    ],
    ids=["classification", "cam2016", "cam2016_official", "wsolevaluation"],
)
def test_protocol_states_do_not_grow_with_the_number_of_images(factory):
    metric = factory()
    stream = batches(30)
    for maps, classes, batch in (next(stream) for _ in range(2)):
        metric.update(metric.score(maps, classes, batch))
    early = footprint(metric)
    for maps, classes, batch in stream:  # 28 more batches: 15x the images
        metric.update(metric.score(maps, classes, batch))
    assert footprint(metric) == early
    assert all(v.dtype == torch.long for v in metric.metric_state.values())
    assert metric.compute()


def test_eval_module_holds_a_fixed_amount_whatever_the_split_size(tmp_path):
    """The Lightning test loop over 12 and over 60 images: the same state sizes, at most
    figure_images samples kept, every row streamed to predictions.csv."""
    seen = {}
    for n in (12, 60):
        cfg = compose_config(
            [*TINY, f"data.dataset.test_size={n}", "data.eval_batch_size=6", "train=false",
             "protocol=[cam2016,cam2016_official,wsolevaluation]", f"paths.output_dir={tmp_path / str(n)}"]
        )  # fmt: skip
        dm = build_data(cfg)
        module = EvalModule(
            build_net(cfg),
            instantiate(cfg.localizer),
            selected_protocols(cfg),
            output_dir=tmp_path / str(n),
            figure_images=4,
        )
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            inference_mode=False,
        )
        trainer.test(module, datamodule=dm, verbose=False)
        assert len(module._samples) <= 4
        pred = pd.read_csv(tmp_path / str(n) / "predictions.csv")
        assert pred["index"].tolist() == list(range(n))
        seen[n] = {name: footprint(p) for name, p in module.protocols.items()}
        seen[n]["classification"] = footprint(module.classification)
    assert seen[12] == seen[60]
