"""What the machine computes fast, and the one place that picks the training precision
and memory format from it (``trainer.precision: auto``, ``channels_last: auto``).

Why it matters: on a CPU without native bf16 (AVX2, or AVX-512 without the BF16
extension) oneDNN *emulates* bf16, and bf16 autocast makes a training step 10-25x slower
than fp32 (GoogLeNet-GAP, batch 32, 224 px, 2-core AMD EPYC with AVX2: fp32 7.3 s,
bf16 82 s; NHWC made the emulated bf16 twice slower again, 166 s). On a CPU with
AVX-512 BF16 or AMX the same bf16 step is about 1.8x faster than fp32. So:

============================  =====================  ===============
CPU                           ``precision: auto``    ``channels_last: auto``
============================  =====================  ===============
native bf16 (AVX512-BF16/AMX) ``bf16-mixed``         true
no native bf16                ``32-true``            true (fp32 NHWC 7.5 s vs NCHW 10 s)
a GPU                         ``bf16-mixed`` where the GPU has bf16, else ``16-mixed``
============================  =====================  ===============

Asking for bf16 on a CPU without it is allowed (results are the same as on a CPU with
it, within bf16's rounding) but warns once with the expected slowdown, and
``channels_last: auto`` then stays off (the emulated kernels are slower still in NHWC).

The capability is read from torch (``torch.backends.cpu.get_cpu_capability()``, which
honours ``ATEN_CPU_CAPABILITY``, and oneDNN's bf16 check), from ``ONEDNN_MAX_CPU_ISA``
(which caps what oneDNN will use: ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``
makes an AVX-512 machine behave, and be treated, as an AVX2 one) and from the CPU flags
in ``/proc/cpuinfo``. Tests fake it by passing a `CPUInfo`.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import asdict, dataclass
from functools import cache

log = logging.getLogger(__name__)

__all__ = [
    "BF16_EMULATED_SLOWDOWN",
    "CPUInfo",
    "PrecisionChoice",
    "choose_precision",
    "cpu_info",
]

#: measured range of bf16-autocast step time over fp32 where bf16 is emulated
BF16_EMULATED_SLOWDOWN = "10-25x"

# oneDNN ISA names from weakest to strongest (ONEDNN_MAX_CPU_ISA's values)
_ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
    "ALL",
)


@dataclass(frozen=True)
class CPUInfo:
    """What the CPU offers the kernels torch will run.

    isa: the vector ISA torch dispatches to (``"AVX2"``, ``"AVX512"``, ``"AMX"`` when
        AVX-512 with AMX tiles, ``"DEFAULT"``, ...).
    bf16_native: bf16 arithmetic in hardware, usable by oneDNN (AVX512-BF16 or AMX).
    model: the CPU's model name.
    """

    isa: str
    bf16_native: bool
    model: str = ""

    def describe(self) -> str:
        """e.g. ``AVX2, no native bf16`` or ``AVX512, native bf16``."""
        return f"{self.isa}, {'native bf16' if self.bf16_native else 'no native bf16'}"

    def as_dict(self) -> dict:
        return asdict(self)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _onednn_cap() -> int | None:
    """Index of ``ONEDNN_MAX_CPU_ISA`` in `_ONEDNN_ISAS`, None when unset or unknown."""
    v = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    return _ONEDNN_ISAS.index(v) if v in _ONEDNN_ISAS else None


@cache
def cpu_info() -> CPUInfo:
    """This machine's `CPUInfo` (cached: it does not change while the process runs)."""
    import torch

    flags = _cpu_flags()
    try:
        isa = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # pragma: no cover - very old torch
        isa = "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "DEFAULT"
    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - a build without oneDNN
        bf16 = False
    bf16 = bf16 or bool({"avx512_bf16", "amx_bf16"} & flags)
    cap = _onednn_cap()
    if cap is not None and cap < _ONEDNN_ISAS.index("AVX512_CORE_BF16"):
        bf16 = False  # oneDNN told not to use the bf16 instructions
    if isa != "AVX512":
        bf16 = False  # torch's own kernels (ATEN_CPU_CAPABILITY) would emulate it
    amx = "amx_bf16" in flags and (cap is None or cap >= _ONEDNN_ISAS.index("AVX512_CORE_AMX"))
    if isa == "AVX512" and amx:
        isa = "AMX"
    return CPUInfo(isa=isa, bf16_native=bf16, model=_cpu_model())


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision and memory format a run trains with, and why."""

    precision: str
    channels_last: bool
    reason: str
    warning: str | None = None

    def line(self) -> str:
        """The one log line: ``precision: 32-true (this CPU has no native bf16), channels_last``."""
        fmt = "channels_last" if self.channels_last else "NCHW"
        return f"precision: {self.precision} ({self.reason}), {fmt}"


_BF16 = {"bf16", "bf16-mixed", "bf16-true"}


def _gpu_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def choose_precision(
    requested: str | int | None,
    accelerator: str | None,
    channels_last: bool | str | None = "auto",
    info: CPUInfo | None = None,
    gpu_bf16: bool | None = None,
) -> PrecisionChoice:
    """Resolve ``trainer.precision`` and ``channels_last`` (each ``auto`` or a value).

    Args:
        requested: Lightning's precision (``"auto"`` / None chooses, anything else is kept).
        accelerator: ``trainer.accelerator`` (``cpu``, ``gpu``, ``cuda``, ``auto``, ...).
        channels_last: True, False or ``"auto"``.
        info: the CPU (default: this machine's `cpu_info`); tests pass a fake.
        gpu_bf16: whether the GPU has bf16 (default: asked of torch).
    """
    acc = str(accelerator or "cpu").lower()
    on_cpu = acc == "cpu" or (acc == "auto" and not _cuda_available())
    req = "auto" if requested is None else str(requested)
    warning = None
    if on_cpu:
        info = info or cpu_info()
        if req == "auto":
            if info.bf16_native:
                precision, reason = "bf16-mixed", f"this CPU computes bf16 natively: {info.isa}"
            else:
                precision, reason = "32-true", f"this CPU has no native bf16: {info.isa}"
        else:
            precision, reason = req, "trainer.precision as set"
            if req in _BF16 and not info.bf16_native:
                warning = (
                    f"trainer.precision={req} on a CPU without native bf16 ({info.isa}): oneDNN "
                    f"emulates bf16, expect training {BF16_EMULATED_SLOWDOWN} slower than "
                    "trainer.precision=32-true (or auto)"
                )
        emulated = precision in _BF16 and not info.bf16_native
        if channels_last in (None, "auto"):
            cl = not emulated  # NHWC doubles the emulated bf16 step's time
        else:
            cl = bool(channels_last)
    else:
        if req == "auto":
            has_bf16 = _gpu_bf16() if gpu_bf16 is None else gpu_bf16
            precision = "bf16-mixed" if has_bf16 else "16-mixed"
            reason = "the GPU has bf16" if has_bf16 else "the GPU has no bf16"
        else:
            precision, reason = req, "trainer.precision as set"
        cl = True if channels_last in (None, "auto") else bool(channels_last)
    return PrecisionChoice(precision=precision, channels_last=cl, reason=reason, warning=warning)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
