"""The built C++ command for the tests in tests/cpp/: where it is and how to run it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("FCN_CPP_BUILD_DIR", ROOT / "cpp" / "build"))
EXE = BUILD / "fcn-segment-cpp"


def skip_without_build() -> None:
    """Skip the calling test module when the C++ build folder does not exist."""
    if not BUILD.is_dir():
        pytest.skip(f"C++ build folder {BUILD} is absent; build it with `bash scripts/build_cpp.sh` "
                    "(scripts/test.sh does this before pytest)", allow_module_level=True)


def run_cpp(*args: str | os.PathLike, check: bool = True) -> subprocess.CompletedProcess:
    """Run fcn-segment-cpp with ``args``; with ``check`` a non-zero exit fails the test."""
    assert EXE.is_file(), f"{BUILD} exists but holds no fcn-segment-cpp; rerun scripts/build_cpp.sh"
    proc = subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"fcn-segment-cpp failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
