"""fcn-segment and the Segmenter under hostile but realistic conditions: outputs that would land on
inputs or on each other, environment failures, SIGTERM, EXIF orientation, truncated JPEGs, a model
whose metadata disagrees with its graph, too many threads."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_deploy.cli.segment import main
from fcn_deploy.errors import FCNError
from fcn_deploy.imageio import jpeg_is_truncated, read_image, read_label
from fcn_deploy.runtime import Segmenter
from process_helpers import leftovers, terminate_mid_run
from runtime_fixtures import random_image, tiny_meta

ROOT = Path(__file__).resolve().parents[2]


def _images(folder: Path, names=("a.png", "b.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), random_image(20, 26, seed=i))
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# -- data loss -----------------------------------------------------------------------------------
def test_output_folder_equal_to_the_input_folder_is_refused_and_nothing_changes(
        tmp_path, tiny_onnx, capsys):
    src = _images(tmp_path / "photos")
    before = _snapshot(src)
    assert main(["-m", str(tiny_onnx), str(src), "-o", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: fcn-segment: output of a.png ")
    assert "is also the image" in err and "choose another output path" in err
    assert _snapshot(src) == before
    # through a symlink to the same folder, and with jpgs (masks would not overwrite, but would
    # land among the inputs and be segmented by the next run)
    (tmp_path / "link").symlink_to(src)
    jpgs = _images(tmp_path / "jpgs", names=("c.jpg",))
    assert main(["-m", str(tiny_onnx), str(jpgs), "-o", str(jpgs)]) == 2
    assert "would be written in the input folder" in capsys.readouterr().err
    assert main(["-m", str(tiny_onnx), str(src), "-o", str(tmp_path / "link")]) == 2
    assert "which resolves to" in capsys.readouterr().err
    assert _snapshot(src) == before and sorted(os.listdir(jpgs)) == ["c.jpg"]


def test_recursive_output_inside_the_input_tree_is_refused(tmp_path, tiny_onnx, capsys):
    src = _images(tmp_path / "data")
    _images(src / "sub", names=("c.png",))
    before = _snapshot(src)
    assert main(["-m", str(tiny_onnx), str(src), "--recursive", "-o", str(src / "masks")]) == 2
    assert "would be written under the input folder" in capsys.readouterr().err
    assert _snapshot(src) == before and not (src / "masks").exists()
    # without --recursive the subfolder is not read, so it may hold the outputs
    assert main(["-m", str(tiny_onnx), str(src), "-o", str(src / "masks")]) == 0
    assert sorted(os.listdir(src / "masks")) == ["a.png", "b.png"]


def test_overlay_and_mask_names_never_collide(tmp_path, tiny_onnx):
    src = _images(tmp_path / "in", names=("x.jpg", "x_overlay.jpg", "x.png"))
    out = tmp_path / "out"
    assert main(["-m", str(tiny_onnx), str(src), "-o", str(out), "--overlay"]) == 0
    # sorted: x.jpg -> x, x.png -> x_2 (x.png is taken), x_overlay.jpg -> x_overlay_2
    assert sorted(os.listdir(out)) == ["x.png", "x_2.png", "x_2_overlay.png", "x_overlay.png",
                                       "x_overlay_2.png", "x_overlay_2_overlay.png"]
    with Segmenter.open(tiny_onnx) as seg:
        for image, stem in (("x.jpg", "x"), ("x_overlay.jpg", "x_overlay_2"), ("x.png", "x_2")):
            np.testing.assert_array_equal(read_label(out / f"{stem}.png"),
                                          seg.predict(read_image(src / image)))


def test_model_given_as_output_name_is_refused(tmp_path, tiny_onnx, capsys):
    src = _images(tmp_path / "in", names=("tiny.png",))
    model = tmp_path / "in" / "tiny.png.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    single = tmp_path / "in" / "tiny.png"
    before = single.read_bytes()
    assert main(["-m", str(model), str(single), "-o", str(src)]) == 2
    assert "is also the image" in capsys.readouterr().err
    assert single.read_bytes() == before


# -- the environment -----------------------------------------------------------------------------
def test_output_under_a_file_and_unwritable_folder_fail_before_the_model_opens(
        tmp_path, tiny_onnx, capsys, monkeypatch):
    src = _images(tmp_path / "in")
    (tmp_path / "file").write_text("x")
    assert main(["-m", str(tiny_onnx), str(src), "-o", str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: output folder {tmp_path / 'file' / 'out'} cannot be created: "
                   f"{tmp_path / 'file'} is a file, not a folder\n")

    import fcn_deploy.runtime.segmenter as segmenter

    def no_model(*a, **k):
        raise AssertionError("the model must not be opened before the output is checked")

    monkeypatch.setattr(segmenter.Segmenter, "open", no_model)
    real_open = os.open

    def read_only(path, flags, *args):
        if Path(path).parent == tmp_path / "ro" and flags & os.O_CREAT:
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    assert main(["-m", str(tiny_onnx), str(src), "-o", str(tmp_path / "ro")]) == 2
    assert capsys.readouterr().err == (f"error: output folder {tmp_path / 'ro'} is not writable: "
                                       "Read-only file system\n")


def test_out_of_memory_and_disk_full_are_reported_per_image(tmp_path, tiny_onnx, capsys,
                                                             monkeypatch):
    src = _images(tmp_path / "in", names=("a.png", "b.png", "c.png"))
    real = Segmenter.predict

    def predict(self, image, **kw):
        if image.shape == (20, 26, 3) and predict.calls == 1:
            predict.calls += 1
            raise MemoryError
        predict.calls += 1
        return real(self, image, **kw)

    predict.calls = 0
    monkeypatch.setattr(Segmenter, "predict", predict)
    out = tmp_path / "out"
    assert main(["-m", str(tiny_onnx), str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"error: {src / 'b.png'}: out of memory for this image" in err
    assert sorted(os.listdir(out)) == ["a.png", "c.png"]

    import fcn_deploy.runtime.outputs as outputs  # where fcn-segment's files are written

    def full(path, label, palette):
        raise FCNError(f"cannot write {path}: no space left on the device (disk full)")

    monkeypatch.setattr(outputs, "write_label_png", full)
    assert main(["-m", str(tiny_onnx), str(src / "a.png"), "-o", str(tmp_path / "o2")]) == 1
    assert "a.png: cannot write" in capsys.readouterr().err


def test_image_over_opencvs_pixel_limit_is_one_error_line(tmp_path, tiny_onnx):
    src = _images(tmp_path / "in")
    env = dict(os.environ, OPENCV_IO_MAX_IMAGE_PIXELS="100")
    code = ("import sys; from fcn_deploy.runtime import Segmenter\n"
            "from fcn_deploy.errors import FCNError\n"
            f"seg = Segmenter.open({str(tiny_onnx)!r})\n"
            "try:\n"
            f"    seg.predict({str(src / 'a.png')!r})\n"
            "except FCNError as e:\n"
            "    print('FCNError', e)\n")
    api = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert api.stdout.startswith(f"FCNError image {src / 'a.png'} has more pixels than OpenCV "
                                 "decodes"), api.stderr
    cli = subprocess.run([sys.executable, "-m", "fcn_deploy.cli.segment", "-m", str(tiny_onnx),
                          str(src), "-o", str(tmp_path / "out")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.count("OPENCV_IO_MAX_IMAGE_PIXELS") == 2  # both images, reported by name


# -- termination ---------------------------------------------------------------------------------
def test_sigterm_mid_run_exits_143_and_leaves_no_temporary_file(tmp_path, tiny_onnx):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(300):
        assert cv2.imwrite(str(src / f"i{i:03d}.png"), random_image(64, 64, seed=i % 7))
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    tmpdir.mkdir()
    rc, err = terminate_mid_run(
        "fcn_deploy.cli.segment", ["-m", tiny_onnx, src, "-o", out, "--overlay", "--scores",
                                   "--threads", "1"],
        # six finished files (a hidden temporary one is removed on SIGTERM: not counted)
        ready=lambda: out.is_dir() and len([n for n in os.listdir(out)
                                            if not n.startswith(".")]) >= 6, tmpdir=tmpdir)
    assert rc == 143, err
    assert err.rstrip().endswith("terminated") and "Traceback" not in err
    written = os.listdir(out)
    assert 6 <= len(written) < 900
    assert [n for n in written if n.startswith(".")] == []  # no hidden temp files
    assert leftovers(tmpdir) == []


# -- inputs believed too easily ------------------------------------------------------------------
def _exif_jpeg(path: Path, orientation: int) -> np.ndarray:
    """A JPEG stored 20x40 whose EXIF says to rotate it; returns the stored BGR pixels."""
    from PIL import Image

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = (0, 0, 255)  # red strip on the left of the stored pixels
    stored[:, 10:] = (255, 128, 0)
    img = Image.fromarray(stored[:, :, ::-1])
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes(), quality=100)
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_exif_orientation_is_followed_by_path_reads_and_the_cli(tmp_path, tiny_onnx):
    stored = _exif_jpeg(tmp_path / "portrait.jpg", orientation=6)  # display: rotate 90 clockwise
    upright = read_image(tmp_path / "portrait.jpg")
    assert stored.shape == (20, 40, 3) and upright.shape == (40, 20, 3)
    np.testing.assert_array_equal(upright, cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE))
    # as every viewer: PIL's exif_transpose gives the same picture
    from PIL import Image, ImageOps

    with Image.open(tmp_path / "portrait.jpg") as im:
        viewer = np.asarray(ImageOps.exif_transpose(im))[:, :, ::-1]
    np.testing.assert_array_equal(upright, viewer)
    with Segmenter.open(tiny_onnx) as seg:
        from_path = seg.predict(tmp_path / "portrait.jpg")
        assert from_path.shape == (40, 20)
        np.testing.assert_array_equal(from_path, seg.predict(upright))
        # an array the caller decoded is used as given (documented): here the stored landscape
        assert seg.predict(stored).shape == (20, 40)
    assert main(["-m", str(tiny_onnx), str(tmp_path / "portrait.jpg"),
                 "-o", str(tmp_path / "out")]) == 0
    np.testing.assert_array_equal(read_label(tmp_path / "out" / "portrait.png"), from_path)


def test_truncated_jpeg_is_refused(tmp_path, tiny_onnx):
    full = tmp_path / "full.jpg"
    assert cv2.imwrite(str(full), random_image(48, 64), [cv2.IMWRITE_JPEG_QUALITY, 90])
    data = full.read_bytes()
    assert not jpeg_is_truncated(data)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) * 2 // 3])
    assert jpeg_is_truncated(cut.read_bytes())
    (tmp_path / "trailing.jpg").write_bytes(data + b"\x00" * 10)  # junk after the end marker
    assert read_image(tmp_path / "trailing.jpg").shape == (48, 64, 3)
    with pytest.raises(FCNError, match=r"image .*cut\.jpg is a truncated JPEG \(no end-of-image "
                                       r"marker after its last scan\)"):
        read_image(cut)
    # an EXIF thumbnail's own end marker must not hide a cut main image
    thumb = tmp_path / "thumb.jpg"
    _exif_jpeg(thumb, orientation=1)
    whole = thumb.read_bytes()
    fake_thumb = b"\xff\xd8\xff\xda\x00\x02\xff\xd9"  # SOI, SOS, EOI inside an APP segment
    app = b"\xff\xe2" + (len(fake_thumb) + 2).to_bytes(2, "big") + fake_thumb
    cut_with_thumb = whole[:2] + app + whole[2:len(whole) - 40]
    assert jpeg_is_truncated(cut_with_thumb)
    assert not jpeg_is_truncated(whole[:2] + app + whole[2:])


def test_model_whose_scores_disagree_with_its_metadata_is_refused_at_open(onnx_factory):
    wrong = onnx_factory("wrong.onnx", num_classes=5, meta=tiny_meta(3))
    with pytest.raises(FCNError, match=r"wrong\.onnx: output 'scores' has 5 channels but the "
                                       r"metadata lists 3 classes"):
        Segmenter.open(wrong)
    from fcn_deploy.runtime import open_runner
    from fcn_deploy.runtime.onnxruntime_backend import OnnxRuntimeRunner

    with pytest.raises(FCNError, match="has 5 channels but the metadata lists 3 classes"):
        open_runner(wrong)
    # a labels-only graph cannot be checked by shape: the labels themselves are
    labels_only = onnx_factory("labels.onnx", num_classes=5, outputs="labels", meta=tiny_meta(2))
    runner = OnnxRuntimeRunner(labels_only)
    x = np.random.default_rng(0).normal(0, 50, (1, 3, 16, 16)).astype(np.float32)
    with pytest.raises(FCNError, match=r"output 'labels' holds class [2-4] but the metadata lists "
                                       r"2 classes \(0\.\.1\)"):
        runner.infer({"image": x})


def test_threads_above_the_core_count_are_capped_with_a_warning(tiny_onnx, tmp_path, capsys):
    from fcn_deploy.runtime.registry import available_cores, cap_threads, thread_options

    cores = available_cores()
    with pytest.warns(UserWarning, match=rf"--threads 1000 is more than the {cores} CPU cores "
                                         rf"available here; using {cores} threads"):
        assert thread_options("onnxruntime", 1000) == {"intra_op_threads": cores}
    assert cap_threads(1) == 1 and cap_threads(None) is None and cap_threads(0) == 0
    src = _images(tmp_path / "in", names=("a.png",))
    assert main(["-m", str(tiny_onnx), str(src), "-o", str(tmp_path / "o"),
                 "--threads", str(cores + 1001)]) == 0
    assert (f"warning: --threads {cores + 1001} is more than the {cores} CPU cores"
            in capsys.readouterr().err)


def test_an_image_the_encoder_cannot_write_is_an_error_naming_it(tmp_path):
    from fcn_deploy.imageio import write_image

    with pytest.raises(FCNError, match=r"could not encode .*wide\.jpg \(2x70000 pixels\); use "
                                       r"\.png or \.jpg \(JPEG and WebP take at most 65500"):
        write_image(tmp_path / "wide.jpg", np.zeros((2, 70000, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
