"""Engine tests reuse the runtime tests' tiny ONNX graphs and their fixtures."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from runtime_fixtures import onnx_factory, tiny_onnx  # noqa: E402,F401  (pytest collects them here)
