"""CPU detection (x86 int8 dot products) and the int8-kernel choice it drives."""
from __future__ import annotations

import platform

import pytest

from fcn_deploy.cpu import (FLAGS_ENV, X64_QUANT_PRECISION, CpuFeatures, assume_cpu,
                            cpu_features, detect_cpu, int8_kernels, parse_cpuinfo, parse_flags)
from fcn_deploy.errors import FCNError

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2

processor\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2
"""
EPYC_VNNI = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
"""
GRACE = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve
CPU implementer\t: 0x41
"""

NO_VNNI = CpuFeatures(machine="x86_64", flags=frozenset({"avx2", "fma"}), name="AVX2 only")
VNNI = CpuFeatures(machine="x86_64", flags=frozenset({"avx2", "avx512f", "avx512_vnni"}),
                   name="AVX-512 VNNI")
ALDER = CpuFeatures(machine="x86_64", flags=frozenset({"avx2", "avx_vnni"}), name="AVX-VNNI")
ARM = CpuFeatures(machine="aarch64", flags=frozenset({"asimd", "asimddp"}), name="ARM")


def test_cpuinfo_is_parsed_from_the_first_processor():
    name, flags = parse_cpuinfo(EPYC_AVX2)
    assert name == "AMD EPYC 7763 64-Core Processor"
    assert "avx2" in flags and "fma" in flags and "avx512_vnni" not in flags
    assert parse_cpuinfo(EPYC_VNNI)[1] >= {"avx512f", "avx512_vnni"}
    assert parse_cpuinfo(GRACE) == ("", frozenset("fp asimd evtstrm aes pmull sha1 sha2 crc32 "
                                                  "atomics asimddp sve".split()))
    assert parse_cpuinfo("") == ("", frozenset())


@pytest.mark.parametrize("cpu,saturates,dot", [(NO_VNNI, True, []),
                                               (VNNI, False, ["avx512_vnni"]),
                                               (ALDER, False, ["avx_vnni"]),
                                               (ARM, False, [])])
def test_only_x86_without_vnni_saturates(cpu, saturates, dot):
    assert cpu.int8_saturates is saturates
    assert cpu.int8_dot_flags == dot


def test_detect_reads_cpuinfo_and_the_environment_override():
    cpu = detect_cpu(cpuinfo=EPYC_AVX2, environ={})
    assert cpu.name == "AMD EPYC 7763 64-Core Processor" and cpu.source == "/proc/cpuinfo"
    assert cpu.machine == platform.machine()
    if cpu.is_x86:
        assert cpu.int8_saturates
    faked = detect_cpu(cpuinfo=EPYC_VNNI, environ={FLAGS_ENV: "avx2, FMA"})
    assert faked.flags == {"avx2", "fma"} and faked.source == f"${FLAGS_ENV}"
    assert faked.name == "AMD EPYC 9R14"  # only the flags are replaced
    assert parse_flags("avx2,avx512_vnni  fma") == {"avx2", "avx512_vnni", "fma"}


def test_detection_is_done_once_and_can_be_assumed():
    assert cpu_features() is cpu_features()
    real = cpu_features()
    with assume_cpu(NO_VNNI):
        assert cpu_features() is NO_VNNI
        with assume_cpu(VNNI):
            assert cpu_features() is VNNI
        assert cpu_features() is NO_VNNI
    assert cpu_features() is real


def test_auto_picks_exact_kernels_only_where_the_fast_ones_saturate():
    exact = int8_kernels(cpu=NO_VNNI)
    assert (exact.choice, exact.requested) == ("exact", "auto")
    assert exact.session_config() == {X64_QUANT_PRECISION: "1"} and not exact.saturating
    assert exact.describe() == "int8: exact U8U8 kernels (no VNNI)"
    for cpu in (VNNI, ALDER, ARM):
        fast = int8_kernels("auto", cpu=cpu)
        assert fast.choice == "fast" and fast.session_config() == {} and not fast.saturating
    assert int8_kernels(cpu=VNNI).describe() == "int8: fast kernels (VNNI: avx512_vnni)"
    assert int8_kernels(cpu=ARM).describe() == ("int8: ONNX Runtime's kernels (aarch64: int8 "
                                                "products do not saturate)")
    with assume_cpu(NO_VNNI):  # no cpu given: the detected (here: assumed) one
        assert int8_kernels().choice == "exact"


def test_forced_choices_and_their_warnings():
    forced = int8_kernels("fast", cpu=NO_VNNI)
    assert forced.choice == "fast" and forced.saturating and forced.session_config() == {}
    assert forced.describe().startswith("int8: fast U8S8 kernels, may saturate (no VNNI")
    exact = int8_kernels("EXACT", cpu=VNNI)
    assert exact.choice == "exact" and exact.session_config() == {X64_QUANT_PRECISION: "1"}
    assert "the fast kernels are exact too" in exact.describe()
    with pytest.raises(FCNError, match="int8 kernels 'u8u8' is not one of auto, fast, exact"):
        int8_kernels("u8u8", cpu=VNNI)
