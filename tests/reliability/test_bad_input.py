"""The bad-input battery: every case through the real command line (``python -m
wsol.run`` / ``python -m wsol.evaluate``, run by the fork server of conftest.py) must end
with exit code 2 and ONE ``error: ...`` line as the last line of stderr, saying what is
wrong and which file, line or setting to fix, with no traceback; and it must leave the
output folder's earlier files as they were (a sentinel metrics.json, predictions.csv
and config.yaml, compared byte for byte) with no temporary file behind.

The readers' and the evaluator's own error logic is tested in detail elsewhere
(tests/data/test_reader_bad_input.py, tests/test_evaluate.py); here each kind of bad
input is checked once, end to end, for the command line's contract."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.data.tiny_datasets import write_image, write_text, write_wsol_boxes
from tests.helpers import TINY

SENTINELS = {
    "metrics.json": b'{"sentinel": "an earlier run"}\n',
    "predictions.csv": b"index,id\n0,sentinel\n",
    "config.yaml": b"sentinel: true\n",
}

#: evaluation of a checkpoint on the tiny wsolevaluation-layout data set (3 classes)
EVAL = [
    "data.dataset.num_classes=3",
    "data.num_workers=0",
    "data.persistent_workers=false",
    "data.pin_memory=false",
    "data.eval_batch_size=2",
    "trainer.enable_progress_bar=false",
    "figure_images=2",
    "protocol=cam2016",
]


@dataclass
class Env:
    """What a case may use: a scratch folder, the tiny data set, a checkpoint."""

    tmp: Path
    ckpt: Path

    def wsol_data(self) -> tuple[Path, Path]:
        """The tiny wsolevaluation-layout data set (images, metadata), written once."""
        images, meta = self.tmp / "data" / "images", self.tmp / "data" / "metadata"
        if not meta.exists():
            write_wsol_boxes(self.tmp / "data")
        return images, meta

    def cub_wsol(self) -> list[str]:
        images, meta = self.wsol_data()
        return [
            "data=cub_wsol",
            f"data.dataset.root={images}",
            f"data.dataset.metadata_root={meta}",
        ]

    def file(self, name: str, data: bytes) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p


@dataclass
class Case:
    id: str
    module: str
    args: Callable[[Env], list[str]]
    #: what the one error line must say (a regular expression, searched)
    says: str
    #: False where the output folder cannot exist (an unwritable place)
    sentinel: bool = True


def the_test_image(env: Env) -> Path:
    return env.wsol_data()[0] / "001.Alpha" / "a_test_1.jpg"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def corrupt(env: Env) -> list[str]:
    the_test_image(env).write_bytes(b"this is not a JPEG file " * 8)
    return [f"ckpt={env.ckpt}", *env.cub_wsol(), *EVAL]


def truncated(env: Env) -> list[str]:
    write_image(the_test_image(env), 20, 16)
    truncate(the_test_image(env))
    return [f"ckpt={env.ckpt}", *env.cub_wsol(), *EVAL]


def too_few_fields(env: Env) -> list[str]:
    _, meta = env.wsol_data()
    edit_line(meta / "test" / "class_labels.txt", 2, "002.Beta/b_test_1.png")
    return [f"ckpt={env.ckpt}", *env.cub_wsol(), *EVAL]


def label_out_of_range(env: Env) -> list[str]:
    _, meta = env.wsol_data()
    edit_line(meta / "test" / "class_labels.txt", 3, "003.Gamma/c_test_1.jpg,7")
    return [f"ckpt={env.ckpt}", *env.cub_wsol(), *EVAL]


def outside_root(env: Env) -> list[str]:
    _, meta = env.wsol_data()
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        f = meta / "test" / name
        f.write_text(f.read_text().replace("001.Alpha/a_test_1.jpg", "../../secret/a_test_1.jpg"))
    return [f"ckpt={env.ckpt}", *env.cub_wsol(), *EVAL]


def empty_split(env: Env) -> list[str]:
    _, meta = env.wsol_data()
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        (meta / "test" / name).write_text("")
    return [f"ckpt={env.ckpt}", *env.cub_wsol(), *EVAL]


def scoremaps(env: Env, bad: str) -> list[str]:
    """Two images' wsolevaluation metadata and score maps, the second one bad."""
    meta, maps = env.tmp / "maps_meta" / "test", env.tmp / "maps"
    ids = ["001.Alpha/a_1.jpg", "001.Alpha/a_2.jpg"]
    write_text(meta / "image_ids.txt", ids)
    write_text(meta / "class_labels.txt", [f"{i},0" for i in ids])
    write_text(meta / "image_sizes.txt", [f"{i},100,80" for i in ids])
    write_text(meta / "localization.txt", [f"{i},10,20,59,69" for i in ids])
    good = np.zeros((224, 224))
    good[50:150, 40:120] = 1.0
    for i in ids:
        (maps / i).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{i}.npy", good)
    target = maps / f"{ids[1]}.npy"
    if bad == "nan":
        m = good.copy()
        m[3, 4] = np.nan
        np.save(target, m)
    elif bad == "inf":
        m = good.copy()
        m[3, 4] = np.inf
        np.save(target, m)
    elif bad == "shape":
        np.save(target, np.zeros((112, 224)))
    else:
        target.unlink()
    return [f"scoremaps={maps}", f"metadata={meta}", "protocol=wsolevaluation", "num_workers=0"]


def damaged_resume(env: Env) -> list[str]:
    """A run folder whose checkpoints/last.ckpt was cut short (a crash of an older
    version, a full disk): resume=true must say so, not fail in torch."""
    data = env.ckpt.read_bytes()
    env.file("out/checkpoints/last.ckpt", data[: len(data) // 3])
    return [*TINY, "resume=true"]


def other_classes_weights(env: Env) -> list[str]:
    return [*TINY, "train=false", f"model.weights={env.ckpt}"]  # 3-class file, 10-class data


CASES = [
    # ---- names: the valid ones are listed -------------------------------------------------
    Case("unknown_model", "wsol.run", lambda e: [*TINY, "model=resnet51"],
         r"unknown model 'resnet51'; valid: .*resnet50_gap.*tiny_gap.* \(set model=NAME\)"),
    Case("unknown_pool", "wsol.run", lambda e: [*TINY, "pool=median"],
         r"unknown pool 'median'; valid: avg, lse, max"),
    Case("unknown_pool_name", "wsol.run", lambda e: [*TINY, "pool.name=median"],
         r"unknown pool 'median'; valid: avg, lse, max"),
    Case("unknown_data", "wsol.run", lambda e: [*TINY, "data=coco"],
         r"unknown data 'coco'; valid: cub, cub_wsol, .*synthetic"),
    Case("unknown_protocol", "wsol.run", lambda e: [*TINY, "protocol=[cam2016,voc07]"],
         r"unknown protocol 'voc07'; valid: cam2016, cam2016_official, wsolevaluation"),
    Case("unknown_localizer", "wsol.run", lambda e: [*TINY, "localizer=scorecam"],
         r"unknown localizer 'scorecam'; valid: backprop, cam, center, full, gradcam"),
    # ---- Hydra's own config errors ------------------------------------------------------
    Case("key_that_does_not_exist", "wsol.run", lambda e: [*TINY, "model.nonexistent=1"],
         r"config: Could not override 'model\.nonexistent'.*\+model\.nonexistent=1"),
    Case("missing_mandatory_value", "wsol.run", lambda e: [*TINY, "seed=???"],
         r"config: seed is not set \(it is \?\?\?\); set seed=VALUE"),
    Case("override_syntax", "wsol.run", lambda e: [*TINY, "trainer.max_epochs=[1"],
         r"config: .*'\[1'.*override_grammar"),
    Case("unknown_hydra_option", "wsol.run", lambda e: [*TINY, "hydra/launcher=slurmm"],
         r"config: .*Could not find 'hydra/launcher/slurmm'; Available options in 'hydra/launcher':.*slurm"),
    # ---- the output folder ----------------------------------------------------------------
    Case("output_dir_under_a_file", "wsol.run",
         lambda e: [*TINY, f"paths.output_dir={e.file('a_file', b'x')}/run"],
         r"output directory .*a_file/run is not writable .*set paths\.output_dir=DIR", sentinel=False),
    Case("output_dir_in_proc", "wsol.run", lambda e: [*TINY, "paths.output_dir=/proc/wsol-run"],
         r"output directory /proc/wsol-run is not writable .*set paths\.output_dir=DIR", sentinel=False),
    Case("hydra_run_dir_in_proc", "wsol.run", lambda e: [*TINY, "hydra.run.dir=/proc/wsol-run"],
         r"cannot make the run folder /proc/wsol-run .*set paths\.output_dir=DIR", sentinel=False),
    # ---- data --------------------------------------------------------------------------
    Case("data_root_does_not_exist", "wsol.evaluate",
         lambda e: [f"ckpt={e.ckpt}", *e.cub_wsol(), "data.dataset.root=/nonexistent/images", *EVAL],
         r"/nonexistent/images.*does not exist.*data\.dataset\.root"),
    Case("empty_split", "wsol.evaluate", empty_split, r"(empty|no images).*test"),
    Case("corrupt_image", "wsol.evaluate", corrupt,
         r"image file .*a_test_1\.jpg is corrupt or truncated.*test/image_ids\.txt:1"),
    Case("truncated_image", "wsol.evaluate", truncated,
         r"image file .*a_test_1\.jpg is corrupt or truncated"),
    Case("metadata_line_too_few_fields", "wsol.evaluate", too_few_fields,
         r"test/class_labels\.txt:2: .*"),
    Case("label_out_of_range", "wsol.evaluate", label_out_of_range,
         r"test/class_labels\.txt:3: .*7.*"),
    Case("annotation_path_outside_the_root", "wsol.evaluate", outside_root,
         r"test/image_ids\.txt:1: .*outside"),
    # ---- score maps --------------------------------------------------------------------
    Case("scoremap_nan", "wsol.evaluate", lambda e: scoremaps(e, "nan"),
         r"score map .*a_2\.jpg\.npy: .*NaN or inf"),
    Case("scoremap_inf", "wsol.evaluate", lambda e: scoremaps(e, "inf"),
         r"score map .*a_2\.jpg\.npy: .*NaN or inf"),
    Case("scoremap_wrong_shape", "wsol.evaluate", lambda e: scoremaps(e, "shape"),
         r"score map .*a_2\.jpg\.npy: .*\(112, 224\)"),
    Case("scoremap_missing", "wsol.evaluate", lambda e: scoremaps(e, "missing"),
         r"score map .*a_2\.jpg\.npy does not exist"),
    # ---- checkpoints and weights --------------------------------------------------------
    Case("checkpoint_of_another_model", "wsol.evaluate",
         lambda e: [f"ckpt={e.ckpt}", "model=vgg16", *TINY[1:]],
         r"ckpt=.*last\.ckpt holds a tiny_gap network, not model=vgg16"),
    Case("checkpoint_of_another_number_of_classes", "wsol.evaluate",
         lambda e: [f"ckpt={e.ckpt}", *TINY[1:]],
         r"ckpt=.*last\.ckpt: the checkpoint's tiny_gap has 3 classes but data synthetic has 10"),
    Case("checkpoint_that_is_not_one", "wsol.evaluate",
         lambda e: [f"ckpt={e.file('notes.ckpt', b'my notes, not a checkpoint')}", *TINY[1:]],
         r"ckpt=.*notes\.ckpt: not a checkpoint"),
    Case("weights_of_another_number_of_classes", "wsol.run", other_classes_weights,
         r"model\.weights=.*last\.ckpt.*"),
    Case("weights_that_are_not_weights", "wsol.run",
         lambda e: [*TINY, "train=false", f"model.weights={e.file('w.pt', b'PK-not-really')}"],
         r"model\.weights=.*w\.pt: cannot be read as a state dict"),
    Case("resume_from_a_damaged_checkpoint", "wsol.run", damaged_resume,
         r"resume=true: .*last\.ckpt is not a readable checkpoint.*delete it"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_error_line_and_leaves_earlier_output(cli, tiny_ckpt, tmp_path, case):
    env = Env(tmp_path, tiny_ckpt)
    out = tmp_path / "out"
    args = case.args(env)
    if case.sentinel:
        out.mkdir(exist_ok=True)
        for name, data in SENTINELS.items():
            (out / name).write_bytes(data)
        args = [*args, f"paths.output_dir={out}"]
    before = set(out.rglob("*")) if out.exists() else set()
    r = cli.run(case.module, args, cwd=tmp_path, timeout=240)
    last = r.last_line
    assert r.returncode == 2, f"exit code {r.returncode}\n{r.stderr[-3000:]}"
    assert last.startswith("error: "), r.stderr[-3000:]
    assert re.search(case.says, last), last
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if case.sentinel:
        for name, data in SENTINELS.items():
            assert (out / name).read_bytes() == data, f"{name} was overwritten"
        new = {p.relative_to(out) for p in set(out.rglob("*")) - before}
        # Hydra's own record of the attempt (.hydra/, *.log) is all a failed run adds
        assert all(p.parts[0] == ".hydra" or p.suffix == ".log" for p in new), sorted(new)
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.part"))
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_checkpoints_and_weights_load_with_weights_only():
    """Every ``torch.load(...)`` call in the package passes ``weights_only=True`` (a
    checkpoint or weights file a user hands in never runs pickled code)."""
    package = Path(__file__).resolve().parents[2] / "wsol"
    calls = []
    for f in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                safe = any(
                    k.arg == "weights_only"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is True
                    for k in node.keywords
                )
                calls.append((f"{f.relative_to(package.parent)}:{node.lineno}", safe))
    assert len(calls) >= 3, calls  # the checkpoint, the weights and the resume readers
    assert [c for c, safe in calls if not safe] == []


def test_a_plain_interpreter_reports_a_hydra_error_in_one_line(tmp_path):
    """The fork server stands in for the interpreter's handling of an uncaught exception
    (sys.excepthook, then exit); one case through a plain ``python -m wsol.run`` shows
    that the real interpreter ends the same way."""
    from tests.helpers import run_cli

    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_bytes(SENTINELS["metrics.json"])
    r = run_cli("wsol.run", [*TINY, "model.nonexistent=1", f"paths.output_dir={out}"], cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: config: Could not override 'model.nonexistent'"), lines[-1]
    assert "Traceback" not in r.stderr
    assert (out / "metrics.json").read_bytes() == SENTINELS["metrics.json"]
