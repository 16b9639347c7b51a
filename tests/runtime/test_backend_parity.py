"""Every backend present gives the same label maps for the same weights.

A tiny FCN-8s (width 1/16, 5 classes) is saved as model.pt and exported to ONNX with the project's
exporter; the Segmenter then runs the checkpoint with PyTorch, the ONNX with ONNX Runtime and, where
TensorRT and a GPU exist, the ONNX through the engine cache with TensorRT.
"""
from __future__ import annotations

import numpy as np
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.runtime import Segmenter, available_backends, open_runner
from fcn_deploy.runtime.registry import get_backend
from runtime_fixtures import random_image

torch = pytest.importorskip("torch")

SIZES = [(48, 64), (37, 41)]  # the second is odd-sized and differs from the export's sample


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models import create_model, save_checkpoint

    folder = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    model = create_model("fcn8s_vgg16", num_classes=5, width=1 / 16)
    with torch.no_grad():  # score layers start at zero; give them weights so labels vary
        for name, p in model.named_parameters():
            if name.startswith("score"):
                p.normal_(0.0, 0.5)
    meta = ModelMeta.default("fcn8s_vgg16", 5, arch_kwargs=dict(model.arch_kwargs))
    ckpt = save_checkpoint(folder / "model.pt", model=model, meta=meta)
    onnx_path = folder / "model.onnx"
    export_model(model, meta, onnx_path, outputs="both", verify=False, sample_shape=(1, 3, 64, 64))
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    return {"checkpoint": ckpt, "onnx": onnx_path, "folder": folder, "images": images}


def _open(backend: str, artifacts) -> Segmenter:
    if backend == "torch":
        return Segmenter.open(artifacts["checkpoint"], backend="torch")
    if backend == "tensorrt":
        return Segmenter.open(artifacts["onnx"], backend="tensorrt",
                              cache_dir=artifacts["folder"] / "engines")
    return Segmenter.open(artifacts["onnx"], backend=backend)


@pytest.fixture(scope="module")
def reference(artifacts):
    """Labels and scores of the PyTorch model itself (no runtime involved)."""
    from fcn_deploy.models import load_model
    from fcn_deploy.preprocess import preprocess

    model, meta = load_model(artifacts["checkpoint"])
    out = []
    with torch.no_grad():
        for image in artifacts["images"]:
            x = torch.from_numpy(preprocess(image, meta.mean)[None])
            scores = model(x)[0].numpy()
            out.append((scores.argmax(0).astype(np.uint8), scores))
    return out


# File backends; URL backends (triton) are compared with ONNX Runtime against a real server in
# tests/serve.
@pytest.mark.parametrize("backend", [b for b in available_backends() if get_backend(b).suffixes])
def test_backends_give_identical_label_maps(backend, artifacts, reference):
    with _open(backend, artifacts) as seg:
        assert seg.backend == backend
        assert seg.meta.arch == "fcn8s_vgg16" and seg.meta.num_classes == 5
        for image, (ref_labels, ref_scores) in zip(artifacts["images"], reference):
            labels, scores = seg.predict(image, scores=True)
            assert labels.shape == image.shape[:2] and scores.shape == (5, *image.shape[:2])
            assert len(np.unique(ref_labels)) >= 2  # a meaningful comparison
            if backend == "tensorrt":  # TF32/other kernels: compare where the margin is clear
                top2 = np.sort(ref_scores, axis=0)[-2:]
                clear = (top2[1] - top2[0]) > 1e-2 * np.abs(ref_scores).max()
                np.testing.assert_array_equal(labels[clear], ref_labels[clear])
                np.testing.assert_allclose(scores, ref_scores, atol=1e-2 * np.abs(ref_scores).max())
            else:
                np.testing.assert_array_equal(labels, ref_labels)
                np.testing.assert_allclose(scores, ref_scores, rtol=1e-4,
                                           atol=1e-4 * np.abs(ref_scores).max())


def test_torch_runner_contract(artifacts):
    with open_runner(artifacts["checkpoint"]) as runner:
        assert runner.backend == "torch"
        assert [t.name for t in runner.inputs] == ["image"]
        assert runner.inputs[0].shape == (None, 3, None, None)
        assert [(t.name, t.shape, t.dtype) for t in runner.outputs] == [
            ("scores", (None, 5, None, None), np.dtype(np.float32)),
            ("labels", (None, None, None), np.dtype(np.uint8))]
        x = np.zeros((2, 3, 40, 36), np.float32)
        out = runner.infer({"image": x}, outputs=["labels"])
        assert list(out) == ["labels"] and out["labels"].shape == (2, 40, 36)
        with pytest.raises(FCNError, match=r"has shape \(3, 40, 36\)"):
            runner.infer({"image": x[0]})
    with pytest.raises(FCNError, match="device 'tpu' is not understood"):
        open_runner(artifacts["checkpoint"], device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FCNError, match="this PyTorch has no usable CUDA"):
            open_runner(artifacts["checkpoint"], device="cuda")


@pytest.mark.parametrize("threads,message", [
    ("2", r"threads must be an integer >= 0, got '2' \(str\)"),
    (1.5, r"threads must be an integer >= 0, got 1\.5 \(float\)"),
    (-1, r"threads must be an integer >= 0, got -1$"),
])
def test_torch_threads_must_be_an_integer(artifacts, threads, message):
    with pytest.raises(FCNError, match=message):
        Segmenter.open(artifacts["checkpoint"], backend="torch", threads=threads)


def test_corrupt_checkpoint_is_a_user_error(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(FCNError, match="model.pt is not a readable fcn-deploy checkpoint"):
        open_runner(bad)


def test_segment_cli_on_the_checkpoint_and_the_onnx_agree(artifacts, tmp_path, capsys):
    import cv2

    from fcn_deploy.cli.segment import main
    from fcn_deploy.imageio import read_label

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), artifacts["images"][0])
    assert main(["--engine", str(artifacts["checkpoint"]), str(src), "-o", str(tmp_path / "pt")]) == 0
    assert main(["--engine", str(artifacts["onnx"]), str(src), "-o", str(tmp_path / "ort")]) == 0
    assert "with torch" in capsys.readouterr().out
    np.testing.assert_array_equal(read_label(tmp_path / "pt" / "a.png"),
                                  read_label(tmp_path / "ort" / "a.png"))
