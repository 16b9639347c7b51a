"""fcn-segment on a folder: label PNGs, overlays, scores, a corrupt file reported and skipped."""
from __future__ import annotations

import importlib.util
import socket

import cv2
import numpy as np
import pytest

from fcn_deploy.cli.segment import collect_images, main
from fcn_deploy.imageio import read_label
from fcn_deploy.runtime import Segmenter
from runtime_fixtures import random_image


def _folder(tmp_path):
    src = tmp_path / "images"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), random_image(24, 30, seed=1))
    cv2.imwrite(str(src / "b.jpg"), random_image(33, 21, seed=2), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (src / "notes.txt").write_text("not an image, not picked up")
    return src


def test_folder_with_a_corrupt_file(tmp_path, tiny_onnx, capsys):
    src = _folder(tmp_path)
    out = tmp_path / "out"
    rc = main(["--engine", str(tiny_onnx), str(src), "-o", str(out), "--overlay", "--scores",
               "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 1  # one image failed
    assert "broken.png" in captured.err and "could not be decoded" in captured.err
    assert "segmented 2 of 3 images with onnxruntime" in captured.out
    assert "median" in captured.out and "mean" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png", "a_overlay.png", "a_scores.npy", "b.png", "b_overlay.png", "b_scores.npy"]
    with Segmenter.open(tiny_onnx) as seg:
        for name in ("a.png", "b.jpg"):
            image = cv2.imread(str(src / name))
            expected, scores = seg.predict(image, scores=True)
            stem = name.split(".")[0]
            np.testing.assert_array_equal(read_label(out / f"{stem}.png"), expected)
            np.testing.assert_allclose(np.load(out / f"{stem}_scores.npy"), scores, rtol=1e-6)
            overlay = cv2.imread(str(out / f"{stem}_overlay.png"))
            assert overlay.shape[0] >= image.shape[0] and overlay.shape[1] > image.shape[1]
    from PIL import Image

    with Image.open(out / "a.png") as img:
        assert img.mode == "P"
        assert img.getpalette()[3:6] == seg.palette[1]


def test_all_good_images_exit_zero_and_missing_inputs_are_failures(tmp_path, tiny_onnx, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "x.png"), random_image(16, 16))
    assert main(["--engine", str(tiny_onnx), str(src / "x.png"), "-o", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "x.png").is_file()
    assert not (tmp_path / "o" / "x_overlay.png").exists()
    capsys.readouterr()
    rc = main(["--engine", str(tiny_onnx), str(src / "x.png"), str(src / "gone.png"),
               "-o", str(tmp_path / "o2")])
    captured = capsys.readouterr()
    assert rc == 1 and "gone.png: does not exist" in captured.err
    assert "segmented 1 of 2 images" in captured.out


def test_user_errors_exit_2_with_one_line(tmp_path, tiny_onnx, onnx_factory, capsys):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), random_image(16, 16))
    assert main(["--engine", str(tmp_path / "none.onnx"), str(img), "-o", str(tmp_path / "o")]) == 2
    assert "error: model file" in capsys.readouterr().err
    labels_only = onnx_factory("labels.onnx", outputs="labels")
    assert main(["--engine", str(labels_only), str(img), "-o", str(tmp_path / "o"), "--scores"]) == 2
    assert "has only a 'labels' output" in capsys.readouterr().err
    assert main(["--engine", str(tiny_onnx), str(tmp_path / "empty_dir_missing"), "-o",
                 str(tmp_path / "o"), "--opacity", "2"]) == 2
    assert "--opacity must be between 0 and 1" in capsys.readouterr().err


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None, reason="no tritonclient")
def test_an_unreachable_server_fails_before_the_output_folder_is_made(tmp_path, capsys):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), random_image(16, 16))
    out = tmp_path / "out"
    url = f"triton://127.0.0.1:{_closed_port()}/m"
    assert main(["--engine", url, str(img), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "127.0.0.1" in err
    assert not out.exists()  # a failed run leaves no empty folder behind


def test_a_model_that_fails_to_open_leaves_no_output_folder(tmp_path, capsys):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), random_image(16, 16))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    out = tmp_path / "out"
    assert main(["--engine", str(broken), str(img), "-o", str(out)]) == 2
    assert "error: ONNX Runtime could not load" in capsys.readouterr().err
    assert not out.exists()


def test_collect_images_keeps_subfolders_and_deduplicates(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ("d/a.png", "d/sub/a.png", "other/a.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found, missing = collect_images([tmp_path / "d", tmp_path / "other" / "a.jpg"], recursive=True)
    assert [stem for _, stem in found] == ["a", "sub/a", "a_2"]
    assert missing == []
    found, _ = collect_images([tmp_path / "d"])
    assert [stem for _, stem in found] == ["a"]
