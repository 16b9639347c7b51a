"""Fixtures for the runtime tests: tiny ONNX graphs written per test (defined in runtime_fixtures)."""
from __future__ import annotations

from runtime_fixtures import onnx_factory, tiny_onnx  # noqa: F401  (pytest collects them here)
