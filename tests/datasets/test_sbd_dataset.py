"""SBD loader on .mat files written with scipy.io.savemat in the GTcls.Segmentation layout."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.io
from dataset_trees import make_label

from fcn_deploy.datasets import SBDSegmentation, create_dataset
from fcn_deploy.errors import FCNError

IDS = ["2008_000002", "2008_000003", "2008_000007"]


def _write_cls(path, seg):
    # as SBD stores it: a struct with Boundaries, Segmentation and CategoriesPresent
    scipy.io.savemat(str(path), {"GTcls": {
        "Boundaries": np.empty((0, 1), dtype=object), "Segmentation": seg,
        "CategoriesPresent": np.unique(seg[seg < 255]).astype(np.uint8)}})


@pytest.fixture
def sbd_tree(tmp_path):
    dataset = tmp_path / "benchmark_RELEASE" / "dataset"
    (dataset / "img").mkdir(parents=True)
    (dataset / "cls").mkdir()
    labels = {}
    for k, name in enumerate(IDS):
        h, w = 16 + 2 * k, 24
        cv2.imwrite(str(dataset / "img" / f"{name}.jpg"), np.full((h, w, 3), 90 + k, np.uint8))
        labels[name] = make_label(h, w, k + 10)
        _write_cls(dataset / "cls" / f"{name}.mat", labels[name])
    (dataset / "train.txt").write_text("\n".join(IDS[:2]) + "\n")
    (dataset / "val.txt").write_text(IDS[2] + "\n")
    return tmp_path / "benchmark_RELEASE", labels


def test_reads_segmentation_field(sbd_tree):
    root, labels = sbd_tree
    ds = SBDSegmentation(root)
    assert ds.image_set == "train" and len(ds) == 2 and ds.num_classes == 21
    for sample in ds:
        np.testing.assert_array_equal(sample.label, labels[sample.name])
        assert sample.label.dtype == np.uint8 and sample.image.shape[:2] == sample.label.shape
    val = SBDSegmentation(root / "dataset", image_set="val")
    assert val.ids == [IDS[2]]
    np.testing.assert_array_equal(val[0].label, labels[IDS[2]])
    spec = create_dataset(f"sbd:{root}:val")
    assert isinstance(spec, SBDSegmentation) and spec.ids == [IDS[2]]


def test_double_valued_segmentation_is_accepted(sbd_tree):
    root, labels = sbd_tree
    _write_cls(root / "dataset" / "cls" / f"{IDS[0]}.mat", labels[IDS[0]].astype(np.float64))
    np.testing.assert_array_equal(SBDSegmentation(root)[0].label, labels[IDS[0]])


def test_corrupt_and_malformed_mat(sbd_tree):
    root, _ = sbd_tree
    cls = root / "dataset" / "cls"
    (cls / f"{IDS[0]}.mat").write_bytes(b"MATLAB 5.0 MAT-file, this is not really one" * 3)
    ds = SBDSegmentation(root)
    with pytest.raises(FCNError, match=rf"SBD label .*{IDS[0]}\.mat could not be read as a "
                                       "MATLAB file"):
        ds[0]
    scipy.io.savemat(str(cls / f"{IDS[1]}.mat"), {"GTinst": {"Segmentation": np.zeros((2, 2))}})
    with pytest.raises(FCNError, match=r"has no GTcls struct \(variables: GTinst\)"):
        ds[1]
    scipy.io.savemat(str(cls / f"{IDS[1]}.mat"), {"GTcls": {"Boundaries": np.zeros((2, 2))}})
    with pytest.raises(FCNError, match="GTcls has no Segmentation field"):
        ds[1]


def test_bad_values_and_missing_files(sbd_tree, tmp_path):
    root, labels = sbd_tree
    bad = labels[IDS[1]].astype(np.int32)
    bad[0, 0] = 300
    _write_cls(root / "dataset" / "cls" / f"{IDS[1]}.mat", bad)
    with pytest.raises(FCNError, match=r"\.mat: label values 300 are out of range"):
        SBDSegmentation(root)[1]
    with pytest.raises(FCNError, match="has no img/ and cls/ folders"):
        SBDSegmentation(tmp_path)
    with pytest.raises(FCNError, match=r"test\.txt does not exist; available sets: train, val"):
        SBDSegmentation(root, image_set="test")
    (root / "dataset" / "img" / f"{IDS[2]}.jpg").unlink()
    with pytest.raises(FCNError, match=rf"1 files listed by .*val\.txt are missing: .*{IDS[2]}"):
        SBDSegmentation(root, image_set="val")
