"""Serve tests reuse the runtime tests' tiny ONNX graphs; a real tritonserver from .venv-triton."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from runtime_fixtures import make_tiny_onnx, onnx_factory, tiny_onnx  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]


def triton_env() -> Path | None:
    """The server-side venv scripts/bootstrap.sh makes (FCN_TRITON_VENV overrides), if present."""
    env = Path(os.environ.get("FCN_TRITON_VENV", ROOT / ".venv-triton"))
    return env if (env / ".fcn-triton-installed").is_file() else None


@pytest.fixture(scope="module")
def triton_python_env() -> Path:
    env = triton_env()
    if env is None:
        why = ("no .venv-triton (made by scripts/bootstrap.sh with /usr/bin/python3.11); "
               "the tritonserver tests need it")
        if os.environ.get("CI") and os.environ.get("FCN_SKIP_TRITON") != "1":
            pytest.fail(f"{why}: the test command's set-up should have made it")  # CI: no silent skip
        pytest.skip(why)
    return env
