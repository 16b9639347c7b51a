"""The CPU features that change results, detected once: x86 int8 dot products (VNNI).

ONNX Runtime runs a symmetric int8 Q/DQ convolution on x86 as a uint8 x int8 integer GEMM. With
an int8 dot-product instruction (``avx512_vnni``, ``avx_vnni``, ``amx_int8``) the products are
summed in 32 bits, exactly. Without one (AVX2 or AVX-512 without VNNI) MLAS uses ``vpmaddubsw``,
which adds pairs of products in 16 bits with saturation (255 x 127 x 2 = 64770 > 32767): the INT8
graph then silently computes a different function (measured on an AVX2-only AMD EPYC: relative
RMS of the scores vs FP32 0.195 instead of under 0.05 on a test net). ONNX Runtime's session
config entry ``session.x64quantprecision = "1"`` makes it convert the int8 weights to uint8 and use
exact uint8 x uint8 kernels instead; it has no effect on other CPUs. Other architectures (ARM's
int8 dot products accumulate in 32 bits) are not affected.

The flags come from ``/proc/cpuinfo`` once per process. ``FCN_CPU_FLAGS`` (flags separated by
spaces or commas) replaces them, and :func:`assume_cpu` replaces the whole description inside a
``with`` block: both let a test, or a user reproducing a report, act as another CPU would.
"""
from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from fcn_deploy.errors import FCNError

#: x86 flags (Linux /proc/cpuinfo names) of instructions that sum int8 products in 32 bits.
INT8_DOT_FLAGS: tuple[str, ...] = ("avx512_vnni", "avx_vnni", "amx_int8")

#: ONNX Runtime's session config key (kOrtSessionOptionsAvx2PrecisionMode) for exact U8U8 kernels.
X64_QUANT_PRECISION = "session.x64quantprecision"

#: Values of ``--int8-kernels`` / ``int8_kernels=``.
INT8_KERNEL_CHOICES: tuple[str, ...] = ("auto", "fast", "exact")

#: Environment variable that replaces the detected CPU flags.
FLAGS_ENV = "FCN_CPU_FLAGS"

_X86 = {"x86_64", "amd64", "i386", "i486", "i586", "i686", "x86"}


@dataclass(frozen=True)
class CpuFeatures:
    """What results depend on: the architecture and the CPU's feature flags."""

    machine: str
    flags: frozenset[str]
    name: str = ""
    source: str = "/proc/cpuinfo"

    @property
    def is_x86(self) -> bool:
        return self.machine.lower() in _X86

    @property
    def int8_dot_flags(self) -> list[str]:
        """The int8 dot-product flags this CPU has (empty on x86 without VNNI)."""
        return [f for f in INT8_DOT_FLAGS if f in self.flags]

    @property
    def int8_saturates(self) -> bool:
        """True on x86 without VNNI: ONNX Runtime's fast int8 kernels may saturate here."""
        return self.is_x86 and not self.int8_dot_flags

    def describe_int8(self) -> str:
        """``VNNI: avx512_vnni``, ``no VNNI`` or ``aarch64``: why its int8 path is what it is."""
        if not self.is_x86:
            return f"{self.machine or 'unknown'}: int8 products do not saturate"
        if self.int8_dot_flags:
            return "VNNI: " + ", ".join(self.int8_dot_flags)
        return "no VNNI"


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The model name and the feature flags of ``/proc/cpuinfo`` text (x86 ``flags``, ARM
    ``Features``), from its first processor."""
    name, flags = "", None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "features") and flags is None:
            flags = frozenset(value.split())
    return name, flags or frozenset()


def parse_flags(text: str) -> frozenset[str]:
    """Flags written as ``"avx2 fma"`` or ``"avx2,fma"`` (the form of ``FCN_CPU_FLAGS``)."""
    return frozenset(f.strip().lower() for f in text.replace(",", " ").split() if f.strip())


def detect_cpu(*, cpuinfo: str | None = None, environ: dict[str, str] | None = None
               ) -> CpuFeatures:
    """Read this machine's CPU (uncached; :func:`cpu_features` is the cached form).

    ``cpuinfo``: the text of ``/proc/cpuinfo`` (default: read it); ``environ``: where to look for
    ``FCN_CPU_FLAGS`` (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    source = "/proc/cpuinfo"
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo, source = "", "none (no /proc/cpuinfo)"
    name, flags = parse_cpuinfo(cpuinfo)
    override = environ.get(FLAGS_ENV)
    if override is not None:
        flags, source = parse_flags(override), f"${FLAGS_ENV}"
    return CpuFeatures(machine=platform.machine(), flags=flags,
                       name=name or platform.processor() or platform.machine(), source=source)


_detected: CpuFeatures | None = None
_assumed: list[CpuFeatures] = []


def cpu_features() -> CpuFeatures:
    """This machine's CPU, detected once per process (or the one :func:`assume_cpu` set)."""
    global _detected
    if _assumed:
        return _assumed[-1]
    if _detected is None:
        _detected = detect_cpu()
    return _detected


@contextmanager
def assume_cpu(cpu: CpuFeatures) -> Iterator[CpuFeatures]:
    """Inside the block, :func:`cpu_features` returns ``cpu`` (tests: act as a CPU without VNNI)."""
    _assumed.append(cpu)
    try:
        yield cpu
    finally:
        _assumed.remove(cpu)


def cpu_name() -> str:
    """The CPU's model name, e.g. "AMD EPYC 9R14" (the architecture where there is none)."""
    return cpu_features().name


@dataclass(frozen=True)
class Int8Kernels:
    """Which ONNX Runtime int8 kernels a session uses, and why.

    ``choice``: "fast" (ONNX Runtime's default U8S8 kernels) or "exact" (U8U8 kernels through
    ``session.x64quantprecision``); ``requested``: what the user asked for (auto/fast/exact).
    """

    choice: str
    requested: str
    cpu: CpuFeatures

    @property
    def saturating(self) -> bool:
        """True when INT8 results may differ from the Q/DQ graph's function (fast, no VNNI)."""
        return self.choice == "fast" and self.cpu.int8_saturates

    def session_config(self) -> dict[str, str]:
        """The ONNX Runtime session config entries that make this choice."""
        return {X64_QUANT_PRECISION: "1"} if self.choice == "exact" else {}

    def describe(self) -> str:
        """One line for reports, e.g. ``int8: exact U8U8 kernels (no VNNI)``."""
        why = self.cpu.describe_int8()
        if not self.cpu.is_x86:
            return f"int8: ONNX Runtime's kernels ({why})"
        if self.choice == "exact":
            if self.cpu.int8_saturates:
                return f"int8: exact U8U8 kernels ({why})"
            return (f"int8: exact U8U8 kernels, as requested ({why}; the fast kernels are exact "
                    "too, and faster)")
        if self.saturating:
            return (f"int8: fast U8S8 kernels, may saturate ({why}; --int8-kernels fast): "
                    "results can differ from the INT8 graph's")
        return f"int8: fast kernels ({why})"


def int8_kernels(requested: str | None = None, *, cpu: CpuFeatures | None = None) -> Int8Kernels:
    """Resolve ``requested`` (None = "auto") for ``cpu`` (None = this machine's).

    "auto" picks the exact U8U8 kernels where the fast ones saturate (x86 without VNNI) and the
    fast kernels elsewhere; "fast" and "exact" force one.
    """
    text = "auto" if requested is None else str(requested).lower()
    if text not in INT8_KERNEL_CHOICES:
        raise FCNError(f"int8 kernels {requested!r} is not one of {', '.join(INT8_KERNEL_CHOICES)}")
    cpu = cpu or cpu_features()
    choice = text if text != "auto" else ("exact" if cpu.int8_saturates else "fast")
    return Int8Kernels(choice=choice, requested=text, cpu=cpu)
