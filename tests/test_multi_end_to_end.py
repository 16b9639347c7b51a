"""Issue 16's acceptance path, through the commands: a two-head SIFT Flow FCN-16s and an RGB-HHA
late-fusion FCN-16s each go fcn-train (synthetic, CPU) -> fcn-export (FP32 and FP16) ->
fcn-quantize (INT8) -> Segmenter (Python: checkpoint and graphs; C++: the graphs), every head
compared with PyTorch on the same held-out sample.

Rules (as in the stage tests): FP32 graphs and the C++ runtime agree with PyTorch to float
rounding, labels equal wherever the top two scores are apart; FP16 within its export tolerance;
INT8 is compared with its own Q/DQ graph evaluated in float (exact kernels), which does not depend
on the CPU's instruction set.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fcn_deploy.datasets import create_dataset
from fcn_deploy.preprocess import preprocess_input
from fcn_deploy.runtime import Segmenter

torch = pytest.importorskip("torch")

SMALL = ["--width", "0.0625", "--dataset-option", "min_size=40", "--dataset-option",
         "max_size=48", "--dataset-option", "num_classes=4", "--batch-size", "2",
         "--val-limit", "2", "--threads", "1", "--no-progress"]
NETS = {"siftflow_fcn16s": "synthetic-twohead", "nyud_fcn16s_color_hha": "synthetic-rgbd"}


def _relative_rms(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


def _unambiguous(scores: np.ndarray, margin: float) -> np.ndarray:
    """Pixels whose top two classes are further apart than ``margin`` (CxHxW scores)."""
    top2 = np.sort(scores, axis=0)[-2:]
    return (top2[1] - top2[0]) > margin


@pytest.fixture(scope="module", params=list(NETS))
def pipeline(request, tmp_path_factory):
    """Train 2 iterations, export FP32 (+labels) and FP16, quantize to INT8, via the commands."""
    from fcn_deploy.cli.export import main as export_main
    from fcn_deploy.cli.quantize import main as quantize_main
    from training.cli import main as train_main

    arch, dataset = request.param, NETS[request.param]
    work = tmp_path_factory.mktemp(arch)
    assert train_main(["--arch", arch, "--dataset", f"{dataset}:4", *SMALL, "--max-iters", "2",
                       "--eval-every", "2", "--out", str(work / "run")]) == 0
    ckpt = work / "run" / "last.pt"
    files = {"pt": ckpt, "fp32": work / "fp32.onnx", "fp16": work / "fp16.onnx",
             "int8": work / "int8.onnx"}
    shape = ["--sample-shape", "1x3x48x48", "--verify-shape", "1x3x48x48"]
    assert export_main([str(ckpt), "-o", str(files["fp32"]), "--outputs", "both", *shape]) == 0
    assert export_main([str(ckpt), "-o", str(files["fp16"]), "--precision", "fp16", *shape]) == 0
    assert quantize_main([str(files["fp32"]), "-o", str(files["int8"]),
                          "--calib", f"{dataset}:8"]) == 0
    sample = create_dataset(f"{dataset}:1:seed=77", min_size=40, max_size=48, num_classes=4)[0]
    return arch, files, sample


def _torch_heads(ckpt, sample) -> dict[str, np.ndarray]:
    """PyTorch's scores per head (CxHxW) on the sample, preprocessed from the metadata."""
    from fcn_deploy.models import load_model

    model, meta = load_model(ckpt)
    model.eval()
    specs = meta.input_specs()
    xs = [torch.from_numpy(preprocess_input(s, sample.image if s.name == "image"
                                            else sample.inputs[s.name]))[None] for s in specs]
    with torch.no_grad():
        out = model(xs[0], **{s.name: x for s, x in zip(specs[1:], xs[1:])})
    out = out if isinstance(out, dict) else {"score": out}
    return {head: t[0].numpy() for head, t in out.items()}, meta


def _segment(path, sample, **options) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{head: (labels, scores)} of the Segmenter on ``path``, every input from the sample."""
    with Segmenter.open(path, **options) as seg:
        extra = {name: sample.inputs[name] for name in seg.input_names[1:]}
        result = seg.predict(sample.image, scores=True, **extra)
        if not seg.multi_head:
            result = {seg.heads[0].name: result}
    return result


def test_fp32_graph_and_checkpoint_segment_every_head_as_pytorch(pipeline):
    arch, files, sample = pipeline
    want, meta = _torch_heads(files["pt"], sample)
    assert list(want) == [h.name for h in meta.head_specs()]
    assert len(meta.input_specs()) == (2 if arch.startswith("nyud") else 1)
    for artifact in ("pt", "fp32"):
        got = _segment(files[artifact], sample)
        assert list(got) == list(want)
        for head, scores in want.items():
            labels, got_scores = got[head]
            scale = float(np.abs(scores).max())
            assert scale > 0 and float(np.abs(got_scores - scores).max()) <= 1e-4 * scale, head
            sure = _unambiguous(scores, 1e-3 * scale)
            assert sure.mean() > 0.5
            assert np.array_equal(labels[sure], scores.argmax(axis=0)[sure]), (artifact, head)


def test_fp16_and_int8_graphs_segment_every_head(pipeline):
    arch, files, sample = pipeline
    want, meta = _torch_heads(files["pt"], sample)
    fp16 = _segment(files["fp16"], sample)
    for head, scores in want.items():
        assert _relative_rms(fp16[head][1], scores) < 1e-2, head
    # INT8: the Segmenter with exact kernels computes the Q/DQ graph evaluated in float
    int8 = _segment(files["int8"], sample, int8_kernels="exact")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(files["int8"]), options, providers=["CPUExecutionProvider"])
    feeds = {s.name: preprocess_input(s, sample.image if s.name == "image"
                                      else sample.inputs[s.name])[None]
             for s in meta.input_specs()}
    names = [h.scores_output for h in meta.head_specs()]
    reference = dict(zip(names, session.run(names, feeds)))
    for head, name in zip(want, names):
        assert _relative_rms(int8[head][1], reference[name][0]) < 0.05, head


def test_cpp_runtime_segments_every_head_as_python(pipeline, tmp_path):
    import cv2

    from fcn_deploy.imageio import write_image

    cpp_dir = Path(__file__).parent / "cpp"
    sys.path.insert(0, str(cpp_dir))
    try:
        from cpp_app import BUILD, run_cpp
    finally:
        sys.path.remove(str(cpp_dir))
    if not BUILD.is_dir():
        pytest.skip(f"C++ build folder {BUILD} is absent (scripts/test.sh builds it)")
    arch, files, sample = pipeline
    image = tmp_path / "x.png"
    write_image(image, sample.image)
    folders = {}
    for name, data in sample.inputs.items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        cv2.imwrite(str(folders[name] / "x.png"), data)  # HHA as read (BGR), depth 16-bit
    for precision in ("fp32", "fp16"):
        python = _segment(files[precision], sample)
        with Segmenter.open(files[precision]) as seg:
            extra = [a for name in seg.input_names[1:] for a in ("--input", f"{name}={folders[name]}")]
        masks, scores_dir = tmp_path / precision / "masks", tmp_path / precision / "scores"
        masks.mkdir(parents=True)
        scores_dir.mkdir()
        run_cpp("--model", files[precision], "--threads", "1", image, *extra, "-o", masks,
                "--scores", scores_dir)
        for head, (labels, scores) in python.items():
            suffix = "" if len(python) == 1 else f"_{head}"
            cpp_scores = np.load(scores_dir / f"x{suffix}.npy")
            scale = float(np.abs(scores).max())
            assert cpp_scores.shape == scores.shape
            assert float(np.abs(cpp_scores - scores).max()) <= 1e-4 * scale, (precision, head)
