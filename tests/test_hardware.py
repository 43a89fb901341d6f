"""The precision and memory format chosen from the hardware (wsol/hardware.py), with the
CPU's capability faked: never by timing."""

from __future__ import annotations

import json
import logging

import pytest

from wsol import hardware
from wsol.hardware import CPUInfo, choose_precision

AVX2 = CPUInfo(isa="AVX2", bf16_native=False, model="fake AVX2")
AVX512 = CPUInfo(isa="AVX512", bf16_native=False, model="fake AVX-512 without BF16")
AVX512_BF16 = CPUInfo(isa="AVX512", bf16_native=True, model="fake AVX-512 BF16")
AMX = CPUInfo(isa="AMX", bf16_native=True, model="fake AMX")


@pytest.mark.parametrize("info", [AVX2, AVX512])
def test_auto_is_fp32_nhwc_without_native_bf16(info):
    c = choose_precision("auto", "cpu", "auto", info=info)
    assert (c.precision, c.channels_last, c.warning) == ("32-true", True, None)
    assert (
        c.line() == f"precision: 32-true (this CPU has no native bf16: {info.isa}), channels_last"
    )


@pytest.mark.parametrize("info", [AVX512_BF16, AMX])
def test_auto_is_bf16_where_native(info):
    c = choose_precision("auto", "cpu", "auto", info=info)
    assert (c.precision, c.channels_last, c.warning) == ("bf16-mixed", True, None)
    assert "natively" in c.line()


def test_explicit_bf16_on_an_emulating_cpu_warns_with_the_slowdown_and_drops_nhwc():
    c = choose_precision("bf16-mixed", "cpu", "auto", info=AVX2)
    assert c.precision == "bf16-mixed"
    assert c.channels_last is False  # NHWC doubles the emulated step
    assert c.warning is not None and "10-25x slower" in c.warning and "\n" not in c.warning
    # asked for NHWC explicitly: kept
    assert choose_precision("bf16-mixed", "cpu", True, info=AVX2).channels_last is True


def test_explicit_choices_are_kept_and_do_not_warn_where_fast():
    assert choose_precision("bf16-mixed", "cpu", False, info=AMX).warning is None
    c = choose_precision("32-true", "cpu", False, info=AMX)
    assert (c.precision, c.channels_last, c.reason) == (
        "32-true",
        False,
        "trainer.precision as set",
    )
    assert choose_precision(None, "cpu", None, info=AVX2).precision == "32-true"


def test_gpu_auto_follows_the_gpu_and_leaves_explicit_values():
    assert choose_precision("auto", "gpu", info=AVX2, gpu_bf16=True).precision == "bf16-mixed"
    assert choose_precision("auto", "cuda", info=AVX2, gpu_bf16=False).precision == "16-mixed"
    assert choose_precision("16-mixed", "gpu", info=AVX2).precision == "16-mixed"


def test_cpu_info_respects_onednn_cap(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 (the slower kind imitated on an AVX-512 machine) means
    no native bf16, whatever the flags say."""
    monkeypatch.setattr(hardware, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    hardware.cpu_info.cache_clear()
    try:
        assert hardware.cpu_info().bf16_native is False
    finally:
        hardware.cpu_info.cache_clear()


def test_the_choice_is_logged_once_and_recorded_in_metrics(tmp_path, caplog, monkeypatch):
    """The main job logs the one line and metrics.json records precision and CPU kind."""
    from tests.helpers import TINY, compose_config
    from wsol.pipeline import train_and_evaluate

    monkeypatch.setattr(hardware, "cpu_info", lambda: AVX2)
    cfg = compose_config([*TINY, f"paths.output_dir={tmp_path}"])
    with caplog.at_level(logging.INFO, logger="wsol.job"):
        train_and_evaluate(cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision:")]
    assert lines == ["precision: 32-true (this CPU has no native bf16: AVX2), channels_last"]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert (m["precision"], m["channels_last"], m["cpu_isa"], m["cpu_bf16"]) == (
        "32-true",
        True,
        "AVX2",
        False,
    )
