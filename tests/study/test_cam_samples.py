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
