"""The C++ TensorRT backend against the Python TensorRT runner, on one plan (GPU machines).

Marked ``tensorrt``: skipped where there is no GPU, failed where nvidia-smi lists a GPU the stack
cannot use (tests/conftest.py). The C++ library has its TensorRT backend only when it was built
with TensorRT's headers and libnvinfer (scripts/build_cpp.sh with TENSORRT_ROOT, or
TensorRT_INCLUDE_DIR + the pip wheel; scripts/gpu_check.sh does this); without it the test skips,
unless FCN_REQUIRE_CPP_TENSORRT=1 (set by gpu_check.sh), where it fails.
"""
from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest
from cpp_app import BUILD, EXE

pytestmark = pytest.mark.tensorrt


def cpp_has_tensorrt() -> bool:
    config = BUILD / "include" / "fcn" / "config.hpp"
    return config.is_file() and re.search(r"#define FCN_HAVE_TENSORRT 1", config.read_text()) is not None


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    if not (EXE.is_file() and cpp_has_tensorrt()):
        why = (f"{BUILD} holds no fcn-segment-cpp with the TensorRT backend; build it with "
               "TensorRT's headers and libnvinfer (see docs/cpp.md)")
        if os.environ.get("FCN_REQUIRE_CPP_TENSORRT") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    import torch

    from fcn_deploy.engine import BuildOptions, Profile, build_engine
    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models import create_model

    folder = tmp_path_factory.mktemp("cpp_trt")
    torch.manual_seed(0)
    model = create_model("fcn8s_vgg16", num_classes=21, width=1 / 16)
    with torch.no_grad():
        for name in model.score_layers:
            model.get_submodule(name).weight.normal_(0.0, 0.1)
    meta = ModelMeta.default("fcn8s_vgg16", 21, arch_kwargs=dict(model.arch_kwargs))
    onnx_path, plan_path = folder / "m.onnx", folder / "m.plan"
    export_model(model, meta, onnx_path, outputs="both", verify=False)
    build_engine(onnx_path, plan_path,
                 BuildOptions(profiles=[Profile((1, 3, 16, 16), (1, 3, 64, 64), (1, 3, 128, 128))]),
                 progress=False, log=lambda _: None)
    return plan_path


def test_cpp_tensorrt_labels_equal_python_tensorrt(plan, tmp_path):
    import cv2

    from fcn_deploy.imageio import read_image, read_label
    from fcn_deploy.runtime import Segmenter

    rng = np.random.default_rng(4)
    images = []
    for h, w in ((64, 64), (37, 53), (100, 75)):
        path = tmp_path / f"img_{h}x{w}.png"
        assert cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        images.append(path)
    masks = tmp_path / "masks"
    masks.mkdir()
    proc = subprocess.run([str(EXE), "--model", str(plan), "--backend", "tensorrt",
                           *map(str, images), "-o", str(masks)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with Segmenter.open(plan) as seg:
        assert seg.backend == "tensorrt"
        for path in images:
            expected = seg.predict(read_image(path))
            got = read_label(masks / f"{path.stem}.png")
            assert got.shape == expected.shape
            assert int((got != expected).sum()) == 0, path.name  # same plan, same kernels
