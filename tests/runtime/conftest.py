"""Fixtures for the runtime tests: tiny ONNX graphs written per test."""
from __future__ import annotations

import pytest

from runtime_fixtures import make_tiny_onnx


@pytest.fixture
def tiny_onnx(tmp_path):
    """Path of a tiny graph with both 'scores' and 'labels' outputs (4 classes)."""
    return make_tiny_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def onnx_factory(tmp_path):
    """``onnx_factory(name, **kwargs)`` writes a variant of the tiny graph."""
    def make(name: str = "variant.onnx", **kwargs):
        return make_tiny_onnx(tmp_path / name, **kwargs)

    return make
