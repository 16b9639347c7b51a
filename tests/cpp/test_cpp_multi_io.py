"""The C++ runtime on multi-input and multi-head FCNs against ONNX Runtime in Python.

Tiny nets (width 1/16, 3-5 classes, seeded random score layers) are exported with
``fcn_deploy.export``: SIFT Flow FCN-16s (two heads, sem + geo), NYUDv2 RGB-HHA FCN-16s (inputs
image + hha), RGB-D FCN-32s (image + 16-bit depth) and HHA-only FCN-32s (one input named hha),
the RGB-HHA net as an FP16 graph (FP32 inputs and outputs). The built ``fcn-segment-cpp`` reads the images, ``--input``
folders and depth PNGs itself; Python feeds ONNX Runtime the same files preprocessed with
``fcn_deploy.preprocess.preprocess_input``. Every head's scores must be close and its labels
equal wherever the top-2 scores are not a tie up to float rounding (the C++ log of depth may
differ from numpy's by an ulp). INT8 is not covered: the quantizer does not feed several inputs
yet. Skipped only when the C++ build folder does not exist.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cpp_app import run_cpp, skip_without_build

skip_without_build()

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from fcn_deploy.imageio import read_depth, read_image, read_label  # noqa: E402
from fcn_deploy.meta import ModelMeta  # noqa: E402
from fcn_deploy.onnxgraph import read_meta  # noqa: E402

THREADS = 1
#: (arch, factory kwargs, precisions exported)
NETS = {
    "siftflow": ("siftflow_fcn16s", {"num_classes": 5, "geo_classes": 3}, ("fp32",)),
    "color_hha": ("nyud_fcn16s_color_hha", {"num_classes": 4}, ("fp16",)),
    "color_d": ("nyud_fcn32s_color_d", {"num_classes": 4}, ("fp32",)),
    "hha": ("nyud_fcn32s_hha", {"num_classes": 4}, ("fp32",)),
}
SIZES = {"a": (45, 37), "b": (64, 52)}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from fcn_deploy.export.api import export_model
    from fcn_deploy.models import create_model

    out = tmp_path_factory.mktemp("cpp_multi_models")
    paths = {}
    for key, (arch, kwargs, precisions) in NETS.items():
        torch.manual_seed(2)
        model = create_model(arch, width=0.0625, **kwargs).eval()
        with torch.no_grad():  # score layers start at zero: give them weights so labels vary
            for name in model.score_layers:
                layer = model.get_submodule(name)
                layer.weight.normal_(0.0, 0.1)
                if layer.bias is not None:
                    layer.bias.normal_(0.0, 0.1)
        meta = ModelMeta.default(arch, kwargs["num_classes"], arch_kwargs=model.arch_kwargs,
                                 **model.io_description())
        for precision in precisions:
            path = out / f"{key}_{precision}.onnx"
            export_model(model, meta, path, precision=precision, verify=False, progress=False)
            paths[f"{key}_{precision}"] = path
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """images/, hha/ and depth/ (16-bit millimetres, some missing = 0) files named alike."""
    root = tmp_path_factory.mktemp("cpp_multi_data")
    rng = np.random.default_rng(5)
    for folder in ("images", "hha", "depth"):
        (root / folder).mkdir()
    for stem, (h, w) in SIZES.items():
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        hha = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        depth = rng.integers(400, 9000, (h, w)).astype(np.uint16)
        depth[rng.random((h, w)) < 0.05] = 0
        assert cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
        assert cv2.imwrite(str(root / "hha" / f"{stem}.png"), hha)
        assert cv2.imwrite(str(root / "depth" / f"{stem}.png"), depth)
    return root


def python_scores(model: Path, files: dict[str, Path]) -> dict[str, np.ndarray]:
    """{head: C x H x W scores} from ONNX Runtime on inputs read and preprocessed in Python."""
    import onnxruntime as ort

    from fcn_deploy.preprocess import preprocess_input

    meta = read_meta(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in meta.input_specs():
        path = files[spec.name]
        data = read_depth(path) if spec.encoding == "log_depth" else read_image(path)
        feeds[spec.name] = preprocess_input(spec, data)[None]
    heads = meta.head_specs()
    results = session.run([h.scores_output for h in heads], feeds)
    return {h.name: r[0] for h, r in zip(heads, results)}


def cpp_run(model: Path, data: Path, out: Path) -> None:
    meta = read_meta(model)
    names = meta.input_names
    first = {"image": "images", "hha": "hha"}[names[0]]
    extra = [arg for name in names[1:] for arg in ("--input", f"{name}={data / name}")]
    masks, scores = out / "masks", out / "scores"
    masks.mkdir()
    scores.mkdir()
    run_cpp("--model", model, "--threads", THREADS, *sorted((data / first).iterdir()), *extra,
            "-o", masks, "--scores", scores)


@pytest.mark.parametrize("net", ["siftflow_fp32", "color_hha_fp16", "color_d_fp32", "hha_fp32"])
def test_cpp_heads_equal_onnxruntime_on_python_preprocessing(net, models, data, tmp_path):
    model = models[net]
    meta = read_meta(model)
    cpp_run(model, data, tmp_path)
    first = {"image": "images", "hha": "hha"}[meta.input_names[0]]
    heads = meta.head_specs()
    seen: dict[str, set[int]] = {head.name: set() for head in heads}
    for stem, (h, w) in SIZES.items():
        files = {name: data / (first if k == 0 else name) / f"{stem}.png"
                 for k, name in enumerate(meta.input_names)}
        expected = python_scores(model, files)
        for head in heads:
            suffix = f"_{head.name}" if meta.multi_head else ""  # single-head names unchanged
            got_scores = np.load(tmp_path / "scores" / f"{stem}{suffix}.npy")
            got_labels = read_label(tmp_path / "masks" / f"{stem}{suffix}.png")
            want = expected[head.name]
            assert got_scores.shape == want.shape == (head.num_classes, h, w)
            scale = float(np.abs(want).max())
            np.testing.assert_allclose(got_scores, want, rtol=0, atol=1e-5 * scale,
                                       err_msg=f"{net} {stem} {head.name}")
            np.testing.assert_array_equal(got_labels, got_scores.argmax(0))  # ties: lowest index
            top2 = np.sort(want, axis=0)[-2:]
            clear = (top2[1] - top2[0]) > 1e-5 * scale
            assert clear.mean() > 0.9, f"{net}: too many near-ties to compare"
            mismatch = int((got_labels[clear] != want.argmax(0)[clear]).sum())
            assert mismatch == 0, f"{net} {stem} {head.name}: {mismatch} pixels differ"
            seen[head.name].update(np.unique(got_labels).tolist())
    for head, classes in seen.items():
        assert len(classes) >= 2, f"{net} {head}: labels too uniform to compare: {classes}"


def test_cpp_head_files_use_each_head_s_palette(models, data, tmp_path):
    """SIFT Flow: <stem>_<head>.png palette PNGs and overlays drawn with that head's colours,
    equal to Python's writer and overlay."""
    from PIL import Image

    from fcn_deploy.imageio import write_label_png
    from fcn_deploy.runtime.visualize import overlay

    model = models["siftflow_fp32"]
    meta = read_meta(model)
    image_path = data / "images" / "a.png"
    run_cpp("--model", model, "--threads", THREADS, image_path, "-o", tmp_path / "mask.png",
            "--overlay", tmp_path / "over.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mask_geo.png", "mask_sem.png", "over_geo.png", "over_sem.png"]
    image = read_image(image_path)
    for head in meta.head_specs():
        labels = read_label(tmp_path / f"mask_{head.name}.png")
        write_label_png(tmp_path / "py.png", labels, head.palette)
        with Image.open(tmp_path / f"mask_{head.name}.png") as cpp, Image.open(tmp_path / "py.png") as py:
            assert cpp.getpalette() == py.getpalette()
        want = overlay(image, labels, head.palette, opacity=0.5, ignore_label=meta.ignore_label)
        got = cv2.imread(str(tmp_path / f"over_{head.name}.png"), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(got, want, err_msg=head.name)


def test_cpp_info_lists_inputs_and_heads(models):
    out = run_cpp("--model", models["color_d_fp32"], "--info").stdout
    assert "input         image: 3 channel(s), image, BGR minus mean [104.00698793, " in out
    assert "input         depth: 1 channel(s), log_depth, log(max(depth, 1)) minus mean [7.844]" in out
    assert "head          score: 4 classes (outputs scores / labels): class_0" in out
    out = run_cpp("--model", models["siftflow_fp32"], "--info").stdout
    assert "head          geo: 3 classes (outputs scores_geo / labels_geo): horizontal vertical sky" in out
    out = run_cpp("--model", models["color_hha_fp16"], "--info").stdout
    assert "input         hha: 3 channel(s), image, RGB minus mean [118.477, 94.076, 132.431]" in out
    assert "(fp16, outputs scores)" in out


def test_cpp_completes_names_only_metadata_like_python(models, tmp_path):
    """Metadata that names inputs and heads without details (as io_description() gives them)
    is completed by the C++ runtime exactly as by fcn_deploy.meta."""
    import onnx

    for key, raw in (("color_d_fp32", {"fcn.inputs": [{"name": "image", "channels": 3},
                                                      {"name": "depth", "channels": 1}]}),
                     ("color_hha_fp16", {"fcn.inputs": [{"name": "image", "channels": 3},
                                                        {"name": "hha", "channels": 3}]}),
                     ("siftflow_fp32", {"fcn.heads": [{"name": "sem", "num_classes": 5},
                                                      {"name": "geo", "num_classes": 3}]})):
        proto = onnx.load(str(models[key]))
        props = {p.key: p.value for p in proto.metadata_props}
        props.update({k: json.dumps(v) for k, v in raw.items()})
        del proto.metadata_props[:]
        for k, v in props.items():
            proto.metadata_props.add(key=k, value=v)
        path = tmp_path / f"{key}_raw.onnx"
        onnx.save(proto, str(path))
        meta = ModelMeta.from_onnx_props(props)
        lines = [x for x in run_cpp("--model", path, "--info").stdout.splitlines()
                 if x.startswith(("input ", "head "))]
        want = []
        for s in meta.input_specs():
            order = "log(max(depth, 1))" if s.encoding == "log_depth" else s.channel_order
            mean = ", ".join(f"{m:.12g}" for m in s.mean)
            want.append(f"input         {s.name}: {s.channels} channel(s), {s.encoding}, {order} "
                        f"minus mean [{mean}]")
        for h in meta.head_specs():
            want.append(f"head          {h.name}: {h.num_classes} classes (outputs "
                        f"{h.scores_output} / {h.labels_output}): {' '.join(h.class_names)}")
        assert lines == want, key


def test_cpp_input_flag_errors(models, data, tmp_path):
    image = data / "images" / "a.png"
    proc = run_cpp("--model", models["color_d_fp32"], image, "-o", tmp_path / "m.png", check=False)
    assert proc.returncode == 2
    assert proc.stderr == ("error: the network also takes input 'depth'; give it with --input "
                           "depth=DIR (files named like the images)\n")
    proc = run_cpp("--model", models["color_d_fp32"], image, "--input", f"hha={data / 'hha'}",
                   "-o", tmp_path / "m.png", check=False)
    assert proc.returncode == 2
    assert "--input hha: the network has no input 'hha'; its other inputs are depth" in proc.stderr
    proc = run_cpp("--model", models["hha_fp32"], image, "--input", f"hha={data / 'hha'}",
                   "-o", tmp_path / "m.png", check=False)
    assert proc.returncode == 2
    assert "'hha' is the network's first input; give its files as IMAGE arguments" in proc.stderr
    proc = run_cpp("--model", models["color_d_fp32"], image, "--input", "depth",
                   "-o", tmp_path / "m.png", check=False)
    assert proc.returncode == 2 and "--input expects NAME=DIR" in proc.stderr

    # an image without its depth file: reported, the others written (exit 1)
    lone = tmp_path / "c.png"
    lone.write_bytes(image.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cpp("--model", models["color_d_fp32"], image, lone, "--input",
                   f"depth={data / 'depth'}", "-o", out, check=False)
    assert proc.returncode == 1
    assert f"error: {lone}: no depth input for {lone}: {data / 'depth'} holds no image named c.*" \
        in proc.stderr
    assert [p.name for p in out.iterdir()] == ["a.png"]
    # a depth file is an input: never written over
    proc = run_cpp("--model", models["color_d_fp32"], image, "--input",
                   f"depth={data / 'depth' / 'a.png'}", "-o", data / "depth" / "a.png", check=False)
    assert proc.returncode == 2 and "is also the depth input" in proc.stderr
