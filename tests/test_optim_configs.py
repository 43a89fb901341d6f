"""Every ``conf/optim`` option builds, through `wsol.pipeline.build_classifier`, the
optimizer and schedule it names, with the learning rate it says, and the schedule steps."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import CONF, TINY, compose_config
from wsol.pipeline import build_classifier, build_net

OPTIMS = sorted(p.stem for p in (CONF / "optim").glob("*.yaml"))


def test_the_optim_group_has_the_expected_options():
    assert {"sgd", "sgd_step", "adamw"} <= set(OPTIMS)


@pytest.mark.parametrize("name", OPTIMS)
def test_optim_option_builds_and_steps(name):
    cfg = compose_config([*TINY, f"optim={name}"])
    cfg.model.num_classes = 3
    module = build_classifier(cfg, build_net(cfg), steps_per_epoch=5)
    conf = module.configure_optimizers()
    opt = conf["optimizer"] if isinstance(conf, dict) else conf
    assert type(opt).__name__ == cfg.optim.optimizer._target_.rsplit(".", 1)[1]
    assert opt.param_groups[0]["initial_lr" if isinstance(conf, dict) else "lr"] > 0
    if isinstance(conf, dict):
        sched = conf["lr_scheduler"]["scheduler"]
        before = opt.param_groups[0]["lr"]
        loss = sum(p.sum() for p in module.parameters())
        loss.backward()
        rates = []
        for _ in range(16):  # StepLR moves after step_size (15) epochs; one-cycle at once
            opt.step()
            sched.step()
            rates.append(opt.param_groups[0]["lr"])
            if rates[-1] != before:
                break
        assert rates[-1] != before, rates  # the schedule moves the rate
    assert torch.isfinite(torch.tensor(opt.param_groups[0]["lr"]))
