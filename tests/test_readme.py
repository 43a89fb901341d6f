"""Every command of README.md runs, so the README cannot drift from the code.

Each command of the README's ``bash`` blocks is parsed (shell quoting and comments as a
shell reads them) and run in this process on tiny inputs: ``wsol.run`` commands with the
tiny run's sizes added (`TINY`; a command naming a paper network builds and evaluates it
untrained), ``wsol.evaluate`` commands with their placeholders
(``RUN``, ``DIR``, ``OUT``, ``METADATA``) bound to a tiny run, exported maps and small
copies of the released metadata, ``wsol.study`` and ``make study`` commands as dry runs.
``make run`` and ``make test`` are checked to be Makefile targets (the first is the main
job, minutes long; the second is this suite). A README command of any other shape fails
the test until this file learns how to run it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.helpers import (
    REPO,
    TINY,
    compose_config,
    evaluate_here,
    openimages_center_args,
    released_openimages_subset,
    text_lines,
)

README = REPO / "README.md"
CUB = SHARED_DATA / "wsolevaluation-metadata-CUB"
OPENIMAGES = SHARED_DATA / "wsolevaluation-metadata-OpenImages"
TINY_DATA = [a for a in TINY if not a.startswith("model=")]


def readme_commands() -> list[str]:
    """The commands of the README's ``bash`` blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def split(command: str) -> tuple[dict[str, str], list[str]]:
    """(environment assignments, words) of a shell command without its comment."""
    words = shlex.split(command, comments=True)
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    return env, words


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_it_promises():
    programs = {" ".join(split(c)[1][:3]) for c in COMMANDS}
    assert {"make run", "make test"} <= {" ".join(split(c)[1][:2]) for c in COMMANDS}
    assert any("wsol.run" in p for p in programs) and any("wsol.evaluate" in p for p in programs)
    assert len(COMMANDS) >= 10


# ---- what each command needs --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from wsol.pipeline import train_and_evaluate

    out = tmp_path_factory.mktemp("readme_run")
    train_and_evaluate(compose_config([*TINY, f"paths.output_dir={out}"]))
    return out


def _copy_head(src: Path, dst: Path, n: int) -> None:
    """The first ``n`` images of a released split: their lines of every file verbatim."""
    dst.mkdir(parents=True)
    ids = text_lines(src / "image_ids.txt")[:n]
    keep = set(ids)
    for f in src.glob("*.txt"):
        rows = [ln for ln in text_lines(f) if ln.split(",")[0] in keep]
        (dst / f.name).write_text("\n".join(rows))


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_run) -> dict[str, Path]:
    """The README's placeholders bound to small real inputs."""
    if not (CUB.is_dir() and OPENIMAGES.is_dir()):
        pytest.skip(f"{SHARED_DATA} lacks the CUB or OpenImages release")
    root = tmp_path_factory.mktemp("readme_places")
    cub = root / "cub"
    for s in ("train", "val", "test"):
        _copy_head(CUB / s, cub / s, 20)
    meta, masks, _ = released_openimages_subset(root / "openimages")
    maps = root / "maps"
    code_cfg = [
        *openimages_center_args(meta, masks),
        f"export_scoremaps={maps}",
        f"paths.output_dir={root / 'export_run'}",
    ]
    from wsol.evaluate import evaluate

    evaluate(compose_config(code_cfg, "evaluate"), code_cfg)
    return {"RUN": tiny_run, "METADATA": cub, "scoremaps": maps, "metadata": meta, "masks": masks}


def _bind(words: list[str], places: dict[str, Path], out: Path) -> list[str]:
    bound = []
    for w in words:
        key, _, value = w.partition("=")
        if value == "DIR" and key in places:
            w = f"{key}={places[key]}"
        elif value == "DIR":  # a folder the command writes
            w = f"{key}={out / key}"
        elif value == "OUT":
            w = f"{key}={out}"
        elif value == "METADATA":
            w = f"{key}={places['METADATA']}"
        elif value.startswith("RUN/"):
            w = f"{key}={places['RUN'] / value[4:]}"
        bound.append(w)
    return bound


def _run_job(args: list[str], out: Path) -> dict:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from wsol.cli import check_overrides
    from wsol.pipeline import train_and_evaluate

    multirun = "-m" in args
    args = [a for a in args if a != "-m"]
    check_overrides(args)
    # a multirun's sweeps: each value once (Hydra's basic sweeper runs their product)
    sweeps = [o for o in OverridesParser.create().parse_overrides(args) if o.is_sweep_override()]
    assert not sweeps or multirun, args
    combos = [args]
    for o in sweeps:
        values = list(o.sweep_string_iterator())
        combos = [
            [a for a in c if not a.startswith(f"{o.key_or_group}=")] + [f"{o.key_or_group}={v}"]
            for c in combos
            for v in values
        ]
    metrics = {}
    for k, combo in enumerate(combos):
        # a paper network at tiny sizes is built and evaluated untrained (the zoo tests
        # train every network); the tiny network trains
        tiny = (
            TINY if not any(a.startswith("model=") for a in combo) else [*TINY_DATA, "train=false"]
        )
        # the command's own sizes (e.g. train_size=1000) give way to the tiny ones
        cfg = compose_config([*combo, *tiny, f"paths.output_dir={out / str(k)}"])
        metrics = train_and_evaluate(cfg)
    return metrics


def _run_evaluate(args: list[str], capsys) -> dict:
    if not any(a.startswith("data=") for a in args):
        args = [*args, *TINY_DATA]  # the tiny run's data set
    args = [*args, "num_workers=0"]
    code, err = evaluate_here(args, capsys)
    assert code == 0, err[-3000:]
    out = next(a.split("=", 1)[1] for a in args if a.startswith("paths.output_dir="))
    return json.loads((Path(out) / "metrics.json").read_text())


def _run_study(words: list[str], env: dict[str, str], monkeypatch, capsys) -> None:
    from wsol.study.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = main([*words, "--dry-run"] if "--dry-run" not in words else words)
    assert code == 0, capsys.readouterr().err[-3000:]


@pytest.mark.parametrize("command", COMMANDS, ids=[shlex.join(split(c)[1])[:60] for c in COMMANDS])
def test_readme_command_runs(command, request, tmp_path, monkeypatch, capsys):
    env, words = split(command)
    if words[:1] == ["make"]:
        target = words[1]
        makefile = (REPO / "Makefile").read_text()
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"no make target {target}"
        if target != "study":
            return  # make run: the main job (minutes); make test: this suite
        study = next(w.split("=", 1)[1] for w in words if w.startswith("STUDY="))
        extra = next((shlex.split(w.split("=", 1)[1]) for w in words if w.startswith("ARGS=")), [])
        for k in env:
            env[k] = str(tmp_path)  # a data root that exists; a dry run reads nothing
        _run_study([f"experiments/{study}.yaml", *extra], env, monkeypatch, capsys)
        return
    assert words[:2] == [".venv/bin/python", "-m"], f"README command of an unknown shape: {command}"
    program, args = words[2], words[3:]
    if program == "wsol.run":
        metrics = _run_job(args, tmp_path)
        if metrics.get("search"):  # a search trial: scored on val only, its objective
            assert metrics["split"] == "val" and "objective_value" in metrics, metrics
        else:
            assert metrics["cls_top1_err"] >= 0
    elif program == "wsol.evaluate":
        places = request.getfixturevalue("places")
        metrics = _run_evaluate(_bind(args, places, tmp_path / "out"), capsys)
        assert metrics, command
    elif program == "wsol.study":
        monkeypatch.chdir(REPO)
        _run_study(args, env, monkeypatch, capsys)
    else:
        pytest.fail(f"README command of an unknown program: {command}")
