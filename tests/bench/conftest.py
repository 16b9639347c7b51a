"""Fixtures for the benchmark tests: one tiny exported FCN and its checkpoint per session."""
from __future__ import annotations

import warnings

import pytest

#: Thin enough that a forward at 64x64 takes milliseconds.
WIDTH = 1 / 16


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from fcn_deploy.models import create_model

    torch.manual_seed(0)
    return create_model("fcn_alexnet", width=WIDTH).eval()


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_model, tmp_path_factory):
    """{"both": .onnx with scores and labels, "scores": .onnx, "pt": checkpoint} of one model."""
    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models import save_checkpoint

    folder = tmp_path_factory.mktemp("bench_artifacts")
    meta = ModelMeta.default("fcn_alexnet", 21, arch_kwargs=dict(tiny_model.arch_kwargs))
    paths = {"both": folder / "tiny_both.onnx", "scores": folder / "tiny_scores.onnx",
             "pt": folder / "tiny.pt"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(tiny_model, meta, paths["both"], outputs="both", verify=False)
        export_model(tiny_model, meta, paths["scores"], outputs="scores", verify=False)
    save_checkpoint(paths["pt"], model=tiny_model, meta=meta)
    return paths
