"""`make bench` (python -m wsol.bench): the quick mode runs every figure and reports
numbers, the report lands where --output says (results/bench.md is left alone), and
--device cuda without a GPU says so. Behaviour only: no wall-clock assertions."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import REPO, run_cli
from wsol.bench.runner import ORDER, main

BENCH_MD = REPO / "results" / "bench.md"


def _state(path):
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None


def _finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def test_quick_run_reports_every_figure(tmp_path, capsys):
    before = _state(BENCH_MD)
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    rc = main(["--quick", "--in-process", "--output", str(md), "--json", str(js)])
    assert rc == 0
    table = capsys.readouterr().out

    results = json.loads(js.read_text())["results"]
    assert list(results) == ORDER
    for name in ORDER:
        res = results[name]
        assert not res.get("failed"), res["rows"]
        assert res["rows"], name
        for r in res["rows"]:
            assert _finite(r["suite"]), (name, r)
            if r["target"] is not None:  # a target row has its comparison and a verdict
                assert _finite(r["baseline"]) and _finite(r["ratio"]), (name, r)
                assert isinstance(r["met"], bool), (name, r)
    # every figure has a target row; the data figure's baseline is the train figure's rate
    for name in ORDER:
        assert any(r["target"] for r in results[name]["rows"]), name
    assert results["data"]["rows"][0]["baseline"] == pytest.approx(results["train"]["train_rate"])
    # the inference breakdown covers the parts the brief names
    parts = results["inference"]["breakdown_ms"]
    for key in ("forward (features + head)", "CAM (localizer)", "**test_step total**"):
        assert _finite(parts[key])
    assert any(k.startswith("cam2016: upsample") for k in parts)
    assert any(k.startswith("wsolevaluation: box sweep") for k in parts)
    # memory: one reading per count
    assert [r["maps"] for r in results["memory"]["readings"]] == [20, 40, 80]

    # the printed table and the markdown hold every figure's rows, and the machine
    text = md.read_text()
    for name in ORDER:
        assert f"\n{name} " in table
        assert f"| {name} |" in text
    for key in ("| CPU |", "| cores |", "| torch |", "| numpy |", "| date |", "| git commit |"):
        assert key in text
    assert "met" in table
    assert _state(BENCH_MD) == before


def test_cli_runs_a_figure_in_its_own_process(tmp_path):
    before = _state(BENCH_MD)
    md = tmp_path / "out" / "bench.md"
    p = run_cli("wsol.bench", ["--quick", "--figures", "eval", "--output", str(md)])
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["figure", "measure", "suite"]
    # a verdict is printed either way; whether the target is met depends on the machine
    assert any(
        line.startswith("eval ") and line.rstrip().endswith(("met", "NOT MET")) for line in lines
    )
    text = md.read_text()
    assert "Each figure ran in its own process" in text
    assert "maxboxacc_v2 @1000" in text
    assert _state(BENCH_MD) == before


def test_cuda_without_gpu_says_no_gpu(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    md = tmp_path / "bench.md"
    rc = main(
        ["--quick", "--in-process", "--device", "cuda", "--figures", "train,inference",
         "--output", str(md)]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "no GPU" in out
    assert "no GPU" in md.read_text()


def test_unknown_figure_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--figures", "nope", "--output", str(tmp_path / "b.md")])
    assert e.value.code == 2
