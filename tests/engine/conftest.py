"""Engine tests reuse the runtime tests' tiny ONNX graphs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from runtime_fixtures import make_tiny_onnx  # noqa: E402


@pytest.fixture
def tiny_onnx(tmp_path):
    return make_tiny_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def onnx_factory(tmp_path):
    def make(name: str = "variant.onnx", **kwargs):
        return make_tiny_onnx(tmp_path / name, **kwargs)

    return make
