"""Fixtures for the export tests (the helpers they use live in export_helpers.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from export_helpers import SIZES, TinyFCN, meta_for, registry_model, torch

# process_helpers (SIGTERM a command mid-run) lives with the runtime tests, as engine/ does it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyFCN().eval()


@pytest.fixture
def images():
    rng = np.random.default_rng(1)
    return [rng.uniform(-120, 130, size=s).astype(np.float32) for s in SIZES]


@pytest.fixture
def checkpoint(tmp_path):
    """A width-1/16 FCN-32s checkpoint with 7 classes (the synthetic dataset's)."""
    from fcn_deploy.models import save_checkpoint

    model = registry_model("fcn32s_vgg16", num_classes=7)
    path = tmp_path / "fcn32s.pt"
    save_checkpoint(path, model=model, meta=meta_for(model))
    return path
