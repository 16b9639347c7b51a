"""The C++ runtime (cpp/, built by scripts/build_cpp.sh) against the Python runtime.

A small FCN-8s (width 1/16, random score layers) is exported to ONNX with its metadata; the built
``fcn-segment-cpp`` segments several images of different sizes and kinds, and its palette-PNG label
maps and overlays must equal the Python Segmenter's results exactly. Skipped only when the C++
build folder does not exist.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cpp_app import EXE, run_cpp, skip_without_build

skip_without_build()

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from fcn_deploy.imageio import read_image, read_label  # noqa: E402
from fcn_deploy.meta import ModelMeta, read_onnx_meta  # noqa: E402

THREADS = 1  # the same intra-op thread count on both sides


def _export(path: Path, *, outputs: str, meta: ModelMeta | None) -> Path:
    from fcn_deploy.export.api import export_model
    from fcn_deploy.models import create_model

    torch.manual_seed(0)
    model = create_model("fcn8s_vgg16", num_classes=21, width=1 / 16).eval()
    with torch.no_grad():  # the score layers start at zero: give them weights so labels vary
        for name in model.score_layers:
            layer = model.get_submodule(name)
            layer.weight.normal_(0.0, 0.1)
            layer.bias.normal_(0.0, 0.1)
    export_model(model, meta, path, outputs=outputs, verify=False)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("cpp_models")
    rgb = ModelMeta.default("fcn8s_vgg16", 21, channel_order="RGB",
                            mean=[122.67891434, 116.66876762, 104.00698793], outputs="both")
    return {
        "bgr_scores": _export(out / "fcn8s_bgr.onnx", outputs="scores", meta=None),
        "rgb_both": _export(out / "fcn8s_rgb.onnx", outputs="both", meta=rgb),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Image files of several sizes and kinds: PNGs, plus one JPEG (the Python side decodes with
    opencv-python's libjpeg, the C++ side with the system OpenCV's: they must agree too)."""
    from fcn_deploy.datasets import SyntheticShapes

    out = tmp_path_factory.mktemp("cpp_images")
    rng = np.random.default_rng(3)
    shapes = SyntheticShapes(num_images=2, seed=5, min_size=48, max_size=96)
    files = {
        "shapes0.png": shapes[0].image,
        "shapes1.png": shapes[1].image,
        "noise_37x53.png": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
        "noise_100x75.png": rng.integers(0, 256, (100, 75, 3), dtype=np.uint8),
        "tiny_7x5.png": rng.integers(0, 256, (7, 5, 3), dtype=np.uint8),
        "gray_41x29.png": rng.integers(0, 256, (41, 29), dtype=np.uint8),
        "rgba_30x45.png": rng.integers(0, 256, (30, 45, 4), dtype=np.uint8),
        "deep_33x33.png": rng.integers(0, 65536, (33, 33, 3), dtype=np.uint16),
    }
    paths = []
    for name, array in files.items():
        assert cv2.imwrite(str(out / name), array)
        paths.append(out / name)
    assert cv2.imwrite(str(out / "shapes0_jpeg.jpg"), shapes[0].image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    paths.append(out / "shapes0_jpeg.jpg")
    return paths


def python_labels(model: Path, image: Path) -> np.ndarray:
    from fcn_deploy.runtime import Segmenter

    seg = Segmenter.open(model, backend="onnxruntime", device="cpu", intra_op_threads=THREADS)
    return seg.predict(read_image(image))


@pytest.mark.parametrize("kind", ["bgr_scores", "rgb_both"])
def test_cpp_label_maps_equal_python(kind, models, images, tmp_path):
    from fcn_deploy.runtime import Segmenter
    from fcn_deploy.runtime.visualize import overlay

    model = models[kind]
    masks, overlays = tmp_path / "masks", tmp_path / "overlays"
    masks.mkdir()
    overlays.mkdir()
    run_cpp("--model", model, "--threads", THREADS, *images, "-o", masks, "--overlay", overlays)

    meta = read_onnx_meta(model)
    seg = Segmenter.open(model, backend="onnxruntime", device="cpu", intra_op_threads=THREADS)
    classes_seen: set[int] = set()
    for image_path in images:
        image = read_image(image_path)
        expected = seg.predict(image)
        got = read_label(masks / f"{image_path.stem}.png")
        assert got.shape == image.shape[:2], image_path.name
        mismatch = int((got != expected).sum())
        assert mismatch == 0, f"{image_path.name}: {mismatch} of {got.size} pixels differ"
        classes_seen.update(np.unique(expected).tolist())
        ov = cv2.imread(str(overlays / f"{image_path.stem}.png"), cv2.IMREAD_COLOR)
        want = overlay(image, expected, meta.palette, opacity=0.5, ignore_label=meta.ignore_label)
        np.testing.assert_array_equal(ov, want, err_msg=f"overlay of {image_path.name}")
    assert len(classes_seen) >= 3, f"labels too uniform to compare: {sorted(classes_seen)}"


def test_cpp_palette_png_matches_python_writer(models, images, tmp_path):
    """The mask file is a palette PNG with the same colours as Python's write_label_png."""
    from PIL import Image

    from fcn_deploy.imageio import write_label_png

    out = tmp_path / "mask.png"
    run_cpp("--model", models["bgr_scores"], "--threads", THREADS, images[0], "-o", out)
    labels = read_label(out)
    write_label_png(tmp_path / "py.png", labels, read_onnx_meta(models["bgr_scores"]).palette)
    with Image.open(out) as cpp_img, Image.open(tmp_path / "py.png") as py_img:
        assert cpp_img.mode == "P"
        assert cpp_img.getpalette() == py_img.getpalette()
        np.testing.assert_array_equal(np.array(cpp_img), np.array(py_img))


def test_cpp_info_reads_the_metadata(models):
    out = run_cpp("--model", models["rgb_both"], "--info").stdout
    assert "arch          fcn8s_vgg16 (fp32, outputs both)" in out
    assert "classes       21: background aeroplane" in out
    assert "preprocess    RGB minus mean [122.67891434, 116.66876762, 104.00698793]" in out
    assert "labels uint8 [batch, height, width]" in out


def test_cpp_bench_reports_latency(models, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cpp("--model", models["bgr_scores"], "--bench", 3, "--warmup", 1, "--size", "40x30",
                   "--threads", THREADS, "--json", out)
    assert "latency   min" in proc.stdout
    stats = json.loads(out.read_text())
    assert (stats["runs"], stats["batch"], stats["height"], stats["width"]) == (3, 1, 40, 30)
    assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert stats["min_ms"] <= stats["mean_ms"]
    assert stats["backend"].startswith("onnxruntime")


def test_cpp_errors_exit_2_with_a_message(models, images, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(models["bgr_scores"].read_bytes()[:5000])
    proc = run_cpp("--model", corrupt, images[0], "-o", tmp_path / "m.png", check=False)
    assert proc.returncode == 2
    assert "error: " in proc.stderr and "could not be loaded by ONNX Runtime" in proc.stderr
    assert "Traceback" not in proc.stderr

    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    proc = run_cpp("--model", models["bgr_scores"], not_image, "-o", tmp_path / "m.png", check=False)
    assert proc.returncode == 2
    assert f"error: image {not_image} could not be decoded" in proc.stderr
    assert not (tmp_path / "m.png").exists()

    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / images[0].name).write_bytes(images[0].read_bytes())
    proc = run_cpp("--model", models["bgr_scores"], images[0], twin / images[0].name, "-o", tmp_path,
                   check=False)
    assert proc.returncode == 2
    assert f"would both be written to {tmp_path / images[0].name}" in proc.stderr


@pytest.fixture(scope="module")
def int8_model(models, tmp_path_factory) -> Path:
    from fcn_deploy.datasets import SyntheticShapes
    from fcn_deploy.quantize import QuantizeConfig, quantize_onnx

    out = tmp_path_factory.mktemp("cpp_int8") / "fcn8s_int8.onnx"
    quantize_onnx(models["rgb_both"], out, SyntheticShapes(num_images=4, seed=7, max_size=64),
                  config=QuantizeConfig(progress=False))
    return out


@pytest.mark.parametrize("kernels", ["auto", "exact"])
def test_cpp_int8_labels_equal_python_exact_kernels(kernels, int8_model, images, tmp_path):
    """An INT8 graph: the C++ app (its default kernels, and forced exact) gives the labels of the
    Python runtime with exact U8U8 kernels, which do not depend on the CPU. (The C++ default
    equals them on every CPU: exact kernels where the fast ones would saturate, and fast kernels
    only where those are exact.)"""
    from fcn_deploy.runtime import Segmenter

    masks = tmp_path / "masks"
    masks.mkdir()
    run_cpp("--model", int8_model, "--threads", THREADS, "--int8-kernels", kernels, *images,
            "-o", masks)
    seg = Segmenter.open(int8_model, backend="onnxruntime", device="cpu",
                         intra_op_threads=THREADS, int8_kernels="exact")
    classes_seen: set[int] = set()
    for image_path in images:
        expected = seg.predict(read_image(image_path))
        got = read_label(masks / f"{image_path.stem}.png")
        mismatch = int((got != expected).sum())
        assert mismatch == 0, f"{image_path.name}: {mismatch} of {got.size} pixels differ"
        classes_seen.update(np.unique(expected).tolist())
    assert len(classes_seen) >= 3, f"labels too uniform to compare: {sorted(classes_seen)}"


@pytest.mark.parametrize("flags,kernels", [("avx2 fma", "auto"), ("avx2 fma", "fast"),
                                           ("avx2,avx512_vnni", "auto"),
                                           ("avx2,avx512_vnni", "exact"),
                                           ("avx2 avx_vnni amx_int8", "auto")])
def test_cpp_chooses_int8_kernels_as_python_does(flags, kernels, int8_model):
    """FCN_CPU_FLAGS makes both runtimes act as a CPU with those flags: the C++ app resolves
    --int8-kernels to the same choice, described in the same words, as the Python runtime."""
    import platform

    from fcn_deploy.cpu import FLAGS_ENV, detect_cpu, int8_kernels

    env = {**os.environ, FLAGS_ENV: flags}
    proc = subprocess.run([str(EXE), "--model", str(int8_model), "--int8-kernels", kernels,
                           "--info"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("cpu "))
    cpu = detect_cpu(environ={FLAGS_ENV: flags})
    if cpu.is_x86:
        assert line == "cpu           " + int8_kernels(kernels, cpu=cpu).describe()
    else:
        assert platform.machine() and "do not saturate" in line


def test_cpp_rejects_unknown_int8_kernels(int8_model):
    proc = run_cpp("--model", int8_model, "--int8-kernels", "u8u8", "--info", check=False)
    assert proc.returncode == 2
    assert "--int8-kernels expects auto, fast or exact, got 'u8u8'" in proc.stderr


def test_cpp_refuses_outputs_over_inputs_before_any_work(models, images, tmp_path):
    """The rule of every Python command: an output that is (or resolves to) an input is refused."""
    image = tmp_path / "photo.png"
    image.write_bytes(images[0].read_bytes())
    before = image.read_bytes()
    proc = run_cpp("--model", models["bgr_scores"], image, "-o", image, check=False)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: mask of {image} {image} is also the image {image}; writing it "
                           "would destroy the input. Choose another output path\n")
    (tmp_path / "link.png").symlink_to(image)
    proc = run_cpp("--model", models["bgr_scores"], image, "--overlay", tmp_path / "link.png",
                   check=False)
    assert proc.returncode == 2 and "is also the image" in proc.stderr
    proc = run_cpp("--model", models["bgr_scores"], image, "-o", tmp_path / "m.png",
                   "--overlay", tmp_path / "m.png", check=False)
    assert proc.returncode == 2 and "would both be written to" in proc.stderr
    proc = run_cpp("--model", models["bgr_scores"], "--bench", "1", "--warmup", "0",
                   "--json", models["bgr_scores"], check=False)
    assert proc.returncode == 2 and "--json report" in proc.stderr and "is also the model" in proc.stderr
    assert image.read_bytes() == before


def test_cpp_masks_and_overlays_in_one_folder_are_refused_not_overwritten(models, images,
                                                                           tmp_path):
    """In a folder, masks and overlays are both named <stem>.png (each kind has its own folder
    option); pointing both at one folder is refused before any work, so nothing is overwritten."""
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cpp("--model", models["bgr_scores"], images[0], images[1], "-o", out,
                   "--overlay", out, check=False)
    stem = images[0].stem
    assert proc.returncode == 2
    assert proc.stderr == (f"error: mask of {images[0]} and overlay of {images[0]} would both be "
                           f"written to {out / (stem + '.png')}; give them different names\n")
    assert list(out.iterdir()) == []


def test_cpp_and_python_agree_on_exif_and_truncated_jpegs(models, tmp_path):
    """Both decode with the EXIF orientation applied and refuse a JPEG cut short."""
    from PIL import Image

    from fcn_deploy.errors import FCNError

    stored = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    stored[:, :16] = 255  # noise, so most of the file is scan data and the cut lands in it
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 8  # display: rotate 90 counter-clockwise
    portrait = tmp_path / "portrait.jpg"
    img.save(portrait, exif=exif.tobytes(), quality=95)
    run_cpp("--model", models["bgr_scores"], portrait, "-o", tmp_path / "cpp.png",
            "--threads", THREADS)
    cpp = read_label(tmp_path / "cpp.png")
    assert cpp.shape == (64, 40)
    np.testing.assert_array_equal(cpp, python_labels(models["bgr_scores"], portrait))

    data = portrait.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) * 3 // 4])
    proc = run_cpp("--model", models["bgr_scores"], cut, "-o", tmp_path / "cut.png", check=False)
    assert proc.returncode == 2
    assert f"error: image {cut} is a truncated JPEG" in proc.stderr
    with pytest.raises(FCNError, match="is a truncated JPEG"):
        read_image(cut)
    assert not (tmp_path / "cut.png").exists()


def test_cpp_bad_image_in_a_list_is_reported_and_the_rest_written(models, images, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cpp("--model", models["bgr_scores"], images[0], bad, images[1], "-o", out,
                   check=False)
    assert proc.returncode == 1
    assert f"error: {bad}: image {bad} could not be decoded" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([images[0].name, images[1].name])


def test_cpp_sigterm_finishes_the_current_image_and_leaves_no_temp_file(models, images, tmp_path):
    import signal
    import time

    out, overlays = tmp_path / "out", tmp_path / "overlays"
    out.mkdir()
    overlays.mkdir()
    many = [images[i % len(images)] for i in range(4)]
    names = []
    for i, src in enumerate(many * 50):
        dst = tmp_path / f"i{i:03d}{src.suffix}"
        dst.write_bytes(src.read_bytes())
        names.append(dst)
    proc = subprocess.Popen([str(EXE), "--model", str(models["bgr_scores"]), *map(str, names),
                             "-o", str(out), "--overlay", str(overlays), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(out.iterdir()) and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.rstrip().endswith("terminated")
    written = [p.name for p in out.iterdir()]
    assert 0 < len(written) < len(names)
    assert [n for n in written if n.startswith(".")] == []
    assert [p.name for p in overlays.iterdir() if p.name.startswith(".")] == []


def test_cpp_threads_above_the_core_count_are_capped_with_a_warning(models):
    proc = run_cpp("--model", models["bgr_scores"], "--info", "--threads", "100000")
    from fcn_deploy.runtime.registry import available_cores

    cores = available_cores()  # the same count as Python's: this process's affinity mask
    assert proc.stderr == (f"warning: --threads 100000 is more than the {cores} CPU cores "
                           f"available here; using {cores} threads\n")

def test_cpp_tiled_labels_equal_python_tiled_and_whole(models, tmp_path):
    """--tile in C++ cuts the same tiles as the Python Segmenter (stride grid, margins from the
    metadata's tiling); both equal the whole-image labels. The image is tall enough for tiles
    with image data on both sides; --max-pixels tiles automatically."""
    import onnx

    from fcn_deploy.imageio import write_image
    from fcn_deploy.runtime import Segmenter
    from fcn_deploy.tiling import TileGeometry

    model = models["bgr_scores"]
    geometry = TileGeometry.from_dict(read_onnx_meta(model).tiling)
    height = 2 * 64 + geometry.margin_before + geometry.context_after + 37
    rng = np.random.default_rng(11)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, 99, 3), dtype=np.uint8), (9, 9), 3)
    path = tmp_path / "tall.png"
    write_image(path, image)
    run_cpp("--model", model, "--threads", THREADS, path, "-o", tmp_path / "tiled.png",
            "--tile", 64)
    run_cpp("--model", model, "--threads", THREADS, path, "-o", tmp_path / "auto.png",
            "--max-pixels", 600 * 600)
    seg = Segmenter.open(model, backend="onnxruntime", device="cpu", intra_op_threads=THREADS)
    tiled = seg.predict(image, tile=64)
    whole, scores = seg.predict(image, scores=True, tile=0)
    top2 = np.sort(scores, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-6 * np.abs(scores).max()  # not a tie up to rounding
    np.testing.assert_array_equal(tiled[clear], whole[clear])
    assert len(np.unique(whole)) >= 3
    np.testing.assert_array_equal(read_label(tmp_path / "tiled.png"), tiled)
    np.testing.assert_array_equal(read_label(tmp_path / "auto.png"),
                                  seg.predict(image, max_pixels=600 * 600))

    old = onnx.load(str(model))  # an artifact without the geometry: a clear error
    keep = [p for p in old.metadata_props if p.key != "fcn.tiling"]
    del old.metadata_props[:]
    old.metadata_props.extend(keep)
    onnx.save(old, str(tmp_path / "old.onnx"))
    proc = run_cpp("--model", tmp_path / "old.onnx", path, "-o", tmp_path / "x.png", "--tile", 64,
                   check=False)
    assert proc.returncode == 2
    assert "carries no tiling geometry (metadata 'tiling'); re-export" in proc.stderr


def test_cpp_checks_output_folders_before_the_work_and_reports_opencv_out_of_memory(models, images,
                                                                                   tmp_path):
    """A missing folder or a folder given as the --json file is found before the model runs
    (it was found after the benchmark); OpenCV's allocation failure is an error line, exit 2
    (it was an 'internal error', exit 1)."""
    proc = run_cpp("--model", models["bgr_scores"], "--bench", "1", "--warmup", "0", "--json",
                   tmp_path, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"error: --json report {tmp_path} is a folder; expected a file name\n"
    proc = run_cpp("--model", models["bgr_scores"], images[0], "-o", tmp_path / "no" / "m.png",
                   check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"error: cannot write mask of {images[0]} {tmp_path / 'no' / 'm.png'}: "
                           f"folder {tmp_path / 'no'} does not exist\n")
    proc = run_cpp("--model", models["bgr_scores"], "--bench", "1", "--size", "2000000x2000000",
                   check=False)
    assert proc.returncode == 2
    assert proc.stderr == "error: out of memory; use smaller images or batches\n"
