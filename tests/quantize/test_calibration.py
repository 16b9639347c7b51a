"""The calibration reader: sources, per-image sizes, exact preprocessing, bad and empty sets."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.quantize import CalibrationReader, CalibrationWarning, open_calibration_source

MEAN = [104.0, 117.0, 123.0]


def _write_images(folder, sizes, seed=0):
    rng = np.random.default_rng(seed)
    images = {}
    for i, (h, w) in enumerate(sizes):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = folder / f"img_{i}.png"
        cv2.imwrite(str(path), img)
        images[path] = img
    return images


def test_folder_reader_feeds_each_image_at_its_size_exactly_preprocessed(tmp_path):
    images = _write_images(tmp_path, [(20, 30), (41, 17), (33, 33)])
    reader = open_calibration_source(tmp_path, mean=MEAN, progress=False)
    assert len(reader) == 3
    feeds = list(iter(reader.get_next, None))
    assert [f["image"].shape for f in feeds] == [(1, 3, 20, 30), (1, 3, 41, 17), (1, 3, 33, 33)]
    first = next(iter(images.values()))
    expected = first.astype(np.float32) - np.float32(MEAN)
    np.testing.assert_array_equal(feeds[0]["image"][0], expected.transpose(2, 0, 1))
    assert feeds[0]["image"].dtype == np.float32
    assert reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["image"], feeds[0]["image"])


def test_rgb_models_get_rgb_input(tmp_path):
    images = _write_images(tmp_path, [(8, 9)])
    reader = open_calibration_source(tmp_path, mean=[1.0, 2.0, 3.0], channel_order="RGB",
                                     progress=False)
    img = next(iter(images.values()))
    np.testing.assert_array_equal(reader.get_next()["image"][0, 0], img[:, :, 2] - 1.0)


def test_set_range_gives_one_slice(tmp_path):
    _write_images(tmp_path, [(10, 10), (11, 11), (12, 12), (13, 13)])
    reader = open_calibration_source(tmp_path, mean=MEAN, progress=False)
    reader.set_range(1, 3)
    assert [f["image"].shape[2] for f in iter(reader.get_next, None)] == [11, 12]
    reader.set_range(3, 4)
    assert reader.get_next()["image"].shape[2] == 13 and reader.get_next() is None


def test_undecodable_images_are_skipped_with_their_names(tmp_path):
    _write_images(tmp_path, [(10, 12), (14, 9)])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.warns(CalibrationWarning, match=r"skipped 2 of 4 calibration images.*broken\.jpg"
                                                r".*empty\.png"):
        reader = open_calibration_source(tmp_path, mean=MEAN, progress=False)
    assert len(reader) == 2
    assert len(reader.skipped) == 2


def test_all_images_undecodable_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"garbage")
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    with pytest.raises(FCNError, match=r"none of the 2 images in the calibration folder .* could "
                                       r"be read \(first: image .*a\.png could not be decoded"):
        open_calibration_source(tmp_path, mean=MEAN, progress=False)


def test_empty_folder_and_missing_source(tmp_path):
    with pytest.raises(FCNError, match="holds no images"):
        open_calibration_source(tmp_path, mean=MEAN, progress=False)
    with pytest.raises(FCNError, match=r"dataset spec '.*nothing_here' is not understood"):
        open_calibration_source(tmp_path / "nothing_here", mean=MEAN, progress=False)
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(FCNError, match=r"x\.onnx is a file; expected a folder of images"):
        open_calibration_source(tmp_path / "x.onnx", mean=MEAN, progress=False)
    with pytest.raises(FCNError, match="calibration set is empty"):
        CalibrationReader([], mean=MEAN, progress=False)


def test_synthetic_and_dataset_specs():
    reader = open_calibration_source("synthetic", mean=MEAN, limit=3, seed=5, progress=False)
    assert len(reader) == 3
    sizes = {f["image"].shape[2:] for f in iter(reader.get_next, None)}
    assert len(sizes) > 1  # SyntheticShapes draws varied sizes
    reader = open_calibration_source("synthetic:7", mean=MEAN, progress=False)
    assert len(reader) == 7
    reader = open_calibration_source("synthetic:7", mean=MEAN, limit=2, progress=False)
    assert len(reader) == 2


def test_dataset_object_and_bad_items():
    from fcn_deploy.datasets import SyntheticShapes

    data = SyntheticShapes(num_images=2, seed=0)
    reader = open_calibration_source(data, mean=MEAN, progress=False)
    assert reader.get_next()["image"].shape[2:] == data[0].image.shape[:2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = CalibrationReader([np.zeros((4, 4), np.uint8), np.zeros((5, 6, 3), np.uint8)],
                                   mean=MEAN, progress=False)
    assert len(reader) == 1
    assert "item 0: expected a uint8 HxWx3 BGR image, got (4, 4)" in str(caught[0].message)
    with pytest.raises(FCNError, match="calibration image count must be >= 1"):
        CalibrationReader([np.zeros((5, 6, 3), np.uint8)], mean=MEAN, limit=0)
