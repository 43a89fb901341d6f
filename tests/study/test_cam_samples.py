"""The CAM figure reads a run's network through the strict checkpoint loader
(`wsol.evaluation.checkpoint.load_network`): a bad file is one line naming it."""

from __future__ import annotations

import pytest

from wsol.errors import WSOLError
from wsol.study import Run
from wsol.study.figures import cam_samples


def test_a_bad_checkpoint_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"not a checkpoint")
    run = Run(name="r", sweep="s", overrides=[], identity={}, select={}, folder=tmp_path)
    with pytest.raises(WSOLError) as e:
        cam_samples(run, 2)
    assert str(ckpt) in str(e.value) and "\n" not in str(e.value)


def test_a_methods_figure_row_draws_its_own_map_maker_on_the_network_it_scored(tmp_path):
    """An evaluation run (train=false model.weights=CKPT localizer=gradcam) has no
    checkpoint of its own: its figure row loads the checkpoint it scored and draws the
    map its own localizer makes (here Grad-CAM, not the CAM)."""
    import torch
    from omegaconf import OmegaConf

    from tests.helpers import TINY, run_wsol_here
    from wsol.evaluation.checkpoint import load_network
    from wsol.localize.gradcam import GradCAM
    from wsol.study.figures import run_weights

    trained = tmp_path / "trained"
    run_wsol_here([*TINY, f"hydra.run.dir={trained}"])
    ckpt = trained / "checkpoints" / "last.ckpt"
    scored = tmp_path / "gradcam"
    run_wsol_here(
        [
            *TINY,
            "train=false",
            f"model.weights={ckpt}",
            "localizer=gradcam",
            f"hydra.run.dir={scored}",
        ]
    )
    run = Run(name="g", sweep="s", overrides=[], identity={}, select={}, folder=scored)
    run.resolved = OmegaConf.load(scored / "config.yaml")
    assert run_weights(run) == ckpt
    drawn = cam_samples(run, 2, own_localizer=True)
    as_cam = cam_samples(run, 2)
    assert not all(
        torch.allclose(torch.as_tensor(a["cam"]), torch.as_tensor(b["cam"]))
        for a, b in zip(drawn, as_cam)
    )
    # the drawn map is Grad-CAM's of the ground-truth class, normalised at image size
    net, _ = load_network(ckpt)
    from hydra.utils import instantiate

    from wsol.data import collate

    dm = instantiate(run.resolved.data, num_workers=0, persistent_workers=False, pin_memory=False)
    batch = collate([dm.dataset("test")[i] for i in range(2)])
    with torch.no_grad():
        f = net.forward_features(batch["image"])
    maps = GradCAM()(net, batch["image"], f, batch["label"][:, None])
    from wsol.report.figures import cam_sample

    for b, s in enumerate(drawn):
        want = cam_sample(batch["image"][b], maps[b, 0], batch["size"][b], net.mean, net.std)
        assert torch.allclose(torch.as_tensor(s["cam"]), torch.as_tensor(want["cam"]), atol=1e-6)
