"""SyntheticShapes: determinism, variety, ignore band, the stride oracle and the VOC writer."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fcn_deploy.constants import voc_palette
from fcn_deploy.datasets import (SHAPES, SyntheticShapes, VOCSegmentation, create_dataset,
                                 stride_oracle, write_voc_layout)
from fcn_deploy.errors import FCNError
from fcn_deploy.metrics import ConfusionMatrix


def test_deterministic_per_seed_and_index():
    a = SyntheticShapes(num_images=6, seed=3)
    b = SyntheticShapes(num_images=6, seed=3)
    late = a[5]  # accessed first here, last below: must not matter
    for i in range(6):
        x, y = a[i], b[i]
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.label, y.label)
        assert x.name == y.name == f"shapes3_{i:06d}"
    np.testing.assert_array_equal(late.image, b[5].image)
    c = SyntheticShapes(num_images=6, seed=4)
    assert all(c[i].image.shape != a[i].image.shape or not np.array_equal(c[i].image, a[i].image)
               for i in range(6))
    assert not np.array_equal(a[0].label, a[1].label)


def test_sizes_classes_and_ignore_band():
    ds = SyntheticShapes(num_images=30, seed=0)
    assert ds.num_classes == 7 and ds.class_names == ["background", *SHAPES[:6]]
    assert ds.palette == [list(c) for c in voc_palette(7)] and ds.ignore_label == 255
    sizes, seen = set(), np.zeros(256, np.int64)
    for s in ds:
        h, w = s.label.shape
        assert 64 <= h <= 128 and 64 <= w <= 128
        assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
        assert s.label.dtype == np.uint8
        sizes.add((h, w))
        seen += np.bincount(s.label.ravel(), minlength=256)
    assert len(sizes) >= 25
    assert np.all(seen[:7] > 0), f"every class appears across 30 images: {seen[:7]}"
    assert seen[7:255].sum() == 0
    assert 0.005 < seen[255] / seen.sum() < 0.08  # a thin boundary band, not a flood
    # the band lies along object edges: nearly all 255 pixels touch an object pixel
    band = touching = 0
    for s in ds:
        objects = ((s.label > 0) & (s.label < 255)).astype(np.uint8)
        near = cv2.dilate(objects, np.ones((3, 3), np.uint8)) > 0
        band += int((s.label == 255).sum())
        touching += int(((s.label == 255) & near).sum())
    assert touching > 0.9 * band
    small = SyntheticShapes(num_images=4, seed=1, min_size=32, max_size=48, num_classes=3,
                            boundary=0)
    for s in small:
        assert 32 <= min(s.label.shape) and max(s.label.shape) <= 48
        assert set(np.unique(s.label)) <= {0, 1, 2}  # no band with boundary=0


def test_options_validated():
    with pytest.raises(FCNError, match=r"num_classes=9 is out of range; expected 2\.\.8"):
        SyntheticShapes(num_classes=9)
    with pytest.raises(FCNError, match="min_size=100, max_size=50"):
        SyntheticShapes(min_size=100, max_size=50)
    with pytest.raises(FCNError, match="seed=-1"):
        SyntheticShapes(seed=-1)
    ds = create_dataset("synthetic:5", seed=2, min_size=40, max_size=50)
    assert len(ds) == 5 and ds.seed == 2 and max(ds[4].label.shape) <= 50
    assert len(create_dataset("synthetic")) == 200


def test_stride_oracle_blocks():
    label = np.zeros((5, 7), np.uint8)
    label[:4, :4] = 2
    label[0, 0] = 255
    label[4, :] = 255
    out = stride_oracle(label, 4, num_classes=3)
    expected = np.zeros((5, 7), np.uint8)
    expected[:4, :4] = 2  # block mode ignores 255; the all-255 bottom blocks fall back to 0
    np.testing.assert_array_equal(out, expected)


def _oracle_miou(ds, stride):
    cm = ConfusionMatrix(ds.num_classes)
    for s in ds:
        cm.update(s.label, stride_oracle(s.label, stride, num_classes=ds.num_classes))
    return cm.compute().mean_iu


def test_stride32_oracle_loses_clearly_to_stride8():
    ds = SyntheticShapes(num_images=40, seed=0)
    m32, m16, m8 = (_oracle_miou(ds, s) for s in (32, 16, 8))
    print(f"oracle mean IU over 40 images: stride 32 {m32:.3f}, stride 16 {m16:.3f}, "
          f"stride 8 {m8:.3f}")
    assert m32 + 0.2 < m8, (m32, m8)
    assert m32 < m16 < m8 < 1.0


def test_write_voc_layout_round_trip(tmp_path):
    ds = SyntheticShapes(num_images=4, seed=5, min_size=40, max_size=60)
    year_dir = write_voc_layout(tmp_path / "VOCdevkit", ds, image_set="train")
    assert year_dir == tmp_path / "VOCdevkit" / "VOC2012"
    write_voc_layout(tmp_path / "VOCdevkit", SyntheticShapes(num_images=2, seed=6),
                     image_set="val")
    back = VOCSegmentation(tmp_path / "VOCdevkit", image_set="train",
                           class_names=ds.class_names)
    assert back.num_classes == 7 and len(back) == 4
    for i in range(4):
        orig, read = ds[i], back[i]
        assert read.name == orig.name
        np.testing.assert_array_equal(read.label, orig.label)
        diff = np.abs(read.image.astype(int) - orig.image.astype(int)).mean()
        assert diff < 4.0, diff  # JPEG quality 95
    assert len(create_dataset(f"voc:{tmp_path / 'VOCdevkit'}")) == 2  # val set written second
    with pytest.raises(FCNError, match="duplicated or not usable as a VOC id"):
        write_voc_layout(tmp_path / "dup", _Twice(ds))


class _Twice:
    """A dataset-like object repeating one sample name."""

    def __init__(self, ds):
        self.ds, self.palette = ds, ds.palette

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.ds[0]


def test_synthetic_spec_options_select_disjoint_image_sets():
    from fcn_deploy.datasets import create_dataset

    val = create_dataset("synthetic:3:seed=1000,min_size=70,max_size=80")
    assert (len(val), val.seed, val.min_size, val.max_size) == (3, 1000, 70, 80)
    train = create_dataset("synthetic:3")
    assert train.seed == 0
    assert not np.array_equal(val[0].image[:50, :50], train[0].image[:50, :50])
    assert all(70 <= s.image.shape[0] <= 80 for s in val)


@pytest.mark.parametrize("spec, message", [
    ("synthetic:x", "not a number of images"),
    ("synthetic:5:colour=1", "synthetic options are num_images, seed"),
    ("synthetic:5:seed=abc", "seed must be an integer"),
])
def test_synthetic_spec_errors(spec, message):
    from fcn_deploy.datasets import create_dataset

    with pytest.raises(FCNError, match=message):
        create_dataset(spec)
