"""The Segmenter on ONNX Runtime: preprocessing from metadata, image kinds, outputs, bad inputs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.runtime import Segmenter
from runtime_fixtures import random_image, reference_labels, tiny_meta


@pytest.fixture
def seg(tiny_onnx):
    with Segmenter.open(tiny_onnx) as s:
        yield s


def test_predict_returns_labels_at_the_image_size_matching_the_reference(seg):
    image = random_image(37, 53)
    labels = seg.predict(image)
    assert labels.shape == (37, 53) and labels.dtype == np.uint8
    ref, clear = reference_labels(image, seg.meta)
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(labels[clear], ref[clear])
    assert len(np.unique(labels)) == 4  # every class occurs: a real test of the argmax
    assert seg.backend == "onnxruntime" and seg.class_names == tiny_meta().class_names


def test_preprocessing_comes_from_the_metadata(onnx_factory):
    """The same weights with RGB channel order and another mean give the reference for that meta."""
    meta = tiny_meta(channel_order="RGB", mean=[120.0, 110.0, 100.0])
    path = onnx_factory("rgb.onnx", meta=meta)
    image = random_image(30, 31, seed=5)
    with Segmenter.open(path) as seg:
        assert seg.meta.channel_order == "RGB" and seg.meta.mean == [120.0, 110.0, 100.0]
        labels = seg.predict(image)
    ref, clear = reference_labels(image, meta)
    np.testing.assert_array_equal(labels[clear], ref[clear])
    bgr_ref, _ = reference_labels(image, tiny_meta())
    assert (bgr_ref != ref).mean() > 0.05  # the metadata made a visible difference


def test_rgb_flag_paths_gray_rgba_and_16_bit_images(seg, tmp_path):
    image = random_image(24, 32)
    expected = seg.predict(image)
    np.testing.assert_array_equal(seg.predict(np.ascontiguousarray(image[:, :, ::-1]), rgb=True), expected)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), image)
    np.testing.assert_array_equal(seg.predict(path), expected)
    np.testing.assert_array_equal(seg.predict(str(path)), expected)
    rgba = np.dstack([image, np.full(image.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(seg.predict(rgba), expected)
    np.testing.assert_array_equal(seg.predict(image.astype(np.uint16) * 257), expected)
    gray = image[:, :, 1]
    np.testing.assert_array_equal(seg.predict(gray), seg.predict(np.dstack([gray] * 3)))
    np.testing.assert_array_equal(seg.predict(gray[:, :, None]), seg.predict(np.dstack([gray] * 3)))


def test_bad_images_are_refused_by_name(seg, tmp_path):
    with pytest.raises(FCNError, match=r"image: the image is empty \(shape \(0, 0, 3\)\)"):
        seg.predict(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(FCNError, match="pixel type float32 is not supported; expected uint8 or uint16"):
        seg.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(FCNError, match=r"shape \(8, 8, 2\) is not an image"):
        seg.predict(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(FCNError, match="expected a numpy array HxWx3, got list"):
        seg.predict([[1, 2, 3]])
    with pytest.raises(FCNError, match=r"image .*nope.png does not exist"):
        seg.predict(tmp_path / "nope.png")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(FCNError, match=r"image .*corrupt.jpg could not be decoded"):
        seg.predict(corrupt)


def test_scores_are_returned_on_request(seg):
    image = random_image(21, 19)
    labels, scores = seg.predict(image, scores=True)
    assert scores.shape == (4, 21, 19) and scores.dtype == np.float32
    np.testing.assert_array_equal(labels, scores.argmax(axis=0))
    np.testing.assert_array_equal(labels, seg.predict(image))


def test_labels_only_graph_refuses_scores_and_scores_only_graph_argmaxes_on_host(onnx_factory):
    image = random_image(16, 20)
    with Segmenter.open(onnx_factory("both.onnx")) as seg:
        expected = seg.predict(image)
    with Segmenter.open(onnx_factory("labels.onnx", outputs="labels")) as seg:
        assert not seg.has_scores
        np.testing.assert_array_equal(seg.predict(image), expected)
        with pytest.raises(FCNError, match="has only a 'labels' output .* scores=True cannot be "
                                           "served; export the model with scores"):
            seg.predict(image, scores=True)
    with Segmenter.open(onnx_factory("scores.onnx", outputs="scores")) as seg:
        assert seg.runner.output_names == ["scores"]
        labels = seg.predict(image)
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, expected)


def test_predict_batch_equals_single_predictions_and_checks_sizes(seg):
    images = [random_image(18, 22, seed=s) for s in range(3)]
    labels = seg.predict_batch(images)
    assert labels.shape == (3, 18, 22)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(labels[i], seg.predict(image))
    labels2, scores = seg.predict_batch(np.stack(images), scores=True)
    assert scores.shape == (3, 4, 18, 22)
    np.testing.assert_array_equal(labels2, labels)
    with pytest.raises(FCNError, match=r"a batch needs images of one size \(HxW\); got #0 18x22, "
                                       r"#1 18x22, #2 20x22"):
        seg.predict_batch(images[:2] + [random_image(20, 22)])
    with pytest.raises(FCNError, match="empty batch"):
        seg.predict_batch([])
    with pytest.raises(FCNError, match=r"image #1: the image is empty"):
        seg.predict_batch([images[0], np.zeros((0, 5, 3), np.uint8)])


def test_static_model_chunks_batches_and_names_the_accepted_shape(onnx_factory):
    path = onnx_factory("static.onnx", static_shape=(1, 3, 16, 16))
    images = [random_image(16, 16, seed=s) for s in range(3)]
    with Segmenter.open(path) as seg:
        labels = seg.predict_batch(images)  # batch dim fixed at 1: run as 3 chunks
        assert labels.shape == (3, 16, 16)
        np.testing.assert_array_equal(labels[2], seg.predict(images[2]))
        with pytest.raises(FCNError, match=r"shape \(1, 3, 20, 16\); the network accepts image "
                                           r"float32 \[1, 3, 16, 16\]"):
            seg.predict(random_image(20, 16))


def test_visualization_helpers_use_the_model_palette(seg):
    image = random_image(20, 26)
    labels = seg.predict(image)
    color = seg.colorize(labels)
    rgb = np.asarray(seg.palette)[labels]
    np.testing.assert_array_equal(color, rgb[:, :, ::-1])
    over = seg.overlay(image, labels, opacity=1.0)
    fg = labels != 0
    np.testing.assert_array_equal(over[fg], color[fg])
    np.testing.assert_array_equal(over[~fg], image[~fg])
    with_legend = seg.overlay(image, labels, legend=True)
    assert with_legend.shape[1] > image.shape[1]
    assert with_legend.shape[0] >= image.shape[0]
