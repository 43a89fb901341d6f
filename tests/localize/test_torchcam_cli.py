"""Every torchcam method through the two entry points, as users run them: ``python -m
wsol.run ... localizer=torchcam localizer.method=NAME`` and ``python -m wsol.evaluate
ckpt=... localizer=torchcam localizer.method=NAME``, each scored by every protocol
(tiny network and data; run in this process, the CLI's own code path after Hydra's
parse)."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import TINY, evaluate_here, run_wsol_here
from wsol.localize.torchcam import METHODS

PROTOCOLS = "protocol=[cam2016,cam2016_official,wsolevaluation]"
#: one key of each protocol's metrics
KEYS = ("gt_known_loc", "official_gt_known_loc", "maxboxacc_v2", "pxap")
#: the sampled methods at two samples: what is tested is the path, not the sampling
FEW = {"smoothgradcampp": 2, "sscam": 2, "iscam": 2}


def _settings(method: str) -> list[str]:
    out = ["localizer=torchcam", f"localizer.method={method}", PROTOCOLS]
    if method in FEW:
        out.append(f"localizer.num_samples={FEW[method]}")
    return out


def _scored(metrics: dict, method: str) -> None:
    assert metrics["localizer"].startswith("torchcam"), metrics["localizer"]
    for key in KEYS:
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), (method, key)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained and scored with one torchcam method: the checkpoint the
    evaluate tests score with the others."""
    out = tmp_path_factory.mktemp("run") / "layercam"
    run_wsol_here([*TINY, *_settings("layercam"), f"hydra.run.dir={out}"])
    return out


def test_wsol_run_scores_a_torchcam_method_by_every_protocol(trained):
    _scored(json.loads((trained / "metrics.json").read_text()), "layercam")
    assert (trained / "predictions.csv").is_file() and (trained / "curves.csv").is_file()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_wsol_evaluate_scores_each_torchcam_method_by_every_protocol(
    trained, tmp_path, capsys, method
):
    data = [a for a in TINY if a.startswith("data.")]
    code, err = evaluate_here(
        [
            f"ckpt={trained / 'checkpoints' / 'last.ckpt'}",
            f"paths.output_dir={tmp_path}",
            *data,
            *_settings(method),
        ],
        capsys,
    )
    assert code == 0, err
    _scored(json.loads((tmp_path / "metrics.json").read_text()), method)
