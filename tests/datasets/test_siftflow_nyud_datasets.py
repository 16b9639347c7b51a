"""SIFT Flow and NYUDv2 in the reference's layouts, written in tmp_path (scipy.io.savemat)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.io

from fcn_deploy.constants import NYUD_HHA_MEAN, NYUD_LOG_DEPTH_MEAN
from fcn_deploy.datasets import create_dataset
from fcn_deploy.datasets.siftflow import SIFTFLOW_SUBDIR
from fcn_deploy.errors import FCNError
from fcn_deploy.preprocess import preprocess_modality


@pytest.fixture
def siftflow_tree(tmp_path):
    """SiftFlowDataset with 3 images; semantic labels hold 0 (void), 1 and 33; geometric -1..3."""
    root = tmp_path / "SiftFlowDataset"
    for sub in ("Images", "SemanticLabels", "GeoLabels"):
        (root / sub / SIFTFLOW_SUBDIR).mkdir(parents=True)
    raw = {}
    for k, name in enumerate(["coast_arnat59", "forest_nat114", "street_urb885"]):
        h, w = 12 + k, 10
        image = np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "Images" / SIFTFLOW_SUBDIR / f"{name}.jpg"), image)
        sem = np.zeros((h, w), np.int32)  # MATLAB int32 class map, 0 = void
        sem[2:, :5], sem[2:, 5:] = 1, 33
        geo = np.full((h, w), 2, np.int16)
        geo[0, :], geo[1, :3] = -1, 0
        geo[5:, :] = 3
        scipy.io.savemat(root / "SemanticLabels" / SIFTFLOW_SUBDIR / f"{name}.mat", {"S": sem})
        scipy.io.savemat(root / "GeoLabels" / SIFTFLOW_SUBDIR / f"{name}.mat",
                         {"S": geo.astype(np.float64)})
        raw[name] = (sem, geo)
    (root / "trainval.txt").write_text("coast_arnat59\nforest_nat114\n")
    (root / "test.txt").write_text("street_urb885\n")
    return root, raw


def test_siftflow_labels_shift_and_void_is_ignored(siftflow_tree):
    root, raw = siftflow_tree
    ds = create_dataset(f"siftflow:{root}")
    assert len(ds) == 2 and ds.num_classes == 33 and ds.class_names[0] == "awning"
    assert ds.heads == {"sem": 33, "geo": 3}
    s = ds[1]
    sem, geo = raw["forest_nat114"]
    assert s.name == "forest_nat114" and s.image.shape == (13, 10, 3)
    assert s.label.dtype == np.uint8 and s.label[0, 0] == 255 and s.label[5, 0] == 0
    assert s.label[5, 9] == 32  # class 33 (window) -> 32
    assert np.array_equal(s.label == 255, sem == 0)
    g = s.labels["geo"]
    assert g[0, 4] == 255 and g[1, 0] == 255 and g[1, 5] == 1 and g[6, 0] == 2
    assert np.array_equal(g == 255, geo <= 0)
    test = create_dataset(f"siftflow:{root}:test")
    assert [x.name for x in test] == ["street_urb885"]


def test_siftflow_errors_name_the_file(siftflow_tree):
    root, _ = siftflow_tree
    (root / "GeoLabels" / SIFTFLOW_SUBDIR / "street_urb885.mat").unlink()
    with pytest.raises(FCNError, match=r"1 geometric labels listed by .*test.txt are missing: "
                                       r".*street_urb885.mat"):
        create_dataset(f"siftflow:{root}:test")
    scipy.io.savemat(root / "SemanticLabels" / SIFTFLOW_SUBDIR / "coast_arnat59.mat",
                     {"L": np.zeros((12, 10))})
    with pytest.raises(FCNError, match=r"SIFT Flow semantic label .*coast_arnat59.mat has no "
                                       r"variable 'S' \(variables: L\)"):
        create_dataset(f"siftflow:{root}")[0]
    with pytest.raises(FCNError, match=r"SIFT Flow root .* has no Images/"):
        create_dataset(f"siftflow:{root / 'Images'}")


@pytest.fixture
def nyud_tree(tmp_path):
    """data/nyud with ids 5001, 5002 (train) and 5003 (test); 16-bit depth in millimetres."""
    root = tmp_path / "nyud"
    for sub in ("data/images", "data/hha", "data/depth", "segmentation"):
        (root / sub).mkdir(parents=True)
    for k, idx in enumerate(["5001", "5002", "5003"]):
        h, w = 9, 11 + k
        rng = np.random.default_rng(k)
        cv2.imwrite(str(root / "data/images" / f"img_{idx}.png"),
                    rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        hha = np.zeros((h, w, 3), np.uint8)
        hha[..., 0], hha[..., 1], hha[..., 2] = 10, 20, 30  # BGR in the file: B=10, G=20, R=30
        cv2.imwrite(str(root / "data/hha" / f"img_{idx}.png"), hha)
        depth = np.full((h, w), 2000, np.uint16)
        depth[0, 0] = 0  # a hole
        cv2.imwrite(str(root / "data/depth" / f"img_{idx}.png"), depth)
        seg = np.full((h, w), 40, np.uint8)
        seg[:3] = 0
        seg[3:6] = 1
        scipy.io.savemat(root / "segmentation" / f"img_{idx}.mat", {"segmentation": seg})
    (root / "train.txt").write_text("5001\n5002\n")
    (root / "test.txt").write_text("5003\n")
    return root


def test_nyud_reads_labels_hha_and_depth(nyud_tree):
    ds = create_dataset(f"nyud:{nyud_tree}")
    assert len(ds) == 2 and ds.num_classes == 40 and ds.class_names[:2] == ["wall", "floor"]
    assert ds.extra_inputs == ("hha", "depth") and ds.heads == {"score": 40}
    s = ds[1]
    assert s.name == "5002" and s.image.shape == (9, 12, 3)
    assert (s.label[:3] == 255).all() and (s.label[3:6] == 0).all() and (s.label[6:] == 39).all()
    assert s.inputs["hha"].shape == (9, 12, 3) and s.inputs["depth"].dtype == np.float32
    assert s.inputs["depth"][0, 1] == 2000 and s.inputs["depth"][0, 0] == 0
    # the net's HHA input is the PNG's channel order (R, G, B = 30, 20, 10) minus the mean
    x = preprocess_modality("hha", s.inputs["hha"])
    assert x.shape == (3, 9, 12)
    assert x[:, 4, 4].tolist() == pytest.approx([30 - NYUD_HHA_MEAN[0], 20 - NYUD_HHA_MEAN[1],
                                                 10 - NYUD_HHA_MEAN[2]])
    d = preprocess_modality("depth", s.inputs["depth"])
    assert d.shape == (1, 9, 12)
    assert d[0, 0, 1] == pytest.approx(np.log(2000.0) - NYUD_LOG_DEPTH_MEAN, abs=1e-6)
    assert d[0, 0, 0] == pytest.approx(-NYUD_LOG_DEPTH_MEAN, abs=1e-6)  # hole: log 1
    only = create_dataset(f"nyud:{nyud_tree}:test", modalities="hha")
    assert only.extra_inputs == ("hha",) and set(only[0].inputs) == {"hha"}


def test_nyud_errors(nyud_tree):
    with pytest.raises(FCNError, match=r"modalities normals not known; NYUDv2 has hha, depth"):
        create_dataset(f"nyud:{nyud_tree}", modalities="hha,normals")
    (nyud_tree / "data/depth/img_5003.png").unlink()
    with pytest.raises(FCNError, match=r"1 hha/depth images listed by .*test.txt are missing: "
                                       r".*img_5003.png"):
        create_dataset(f"nyud:{nyud_tree}:test")
    assert len(create_dataset(f"nyud:{nyud_tree}:test", modalities="hha")) == 1
    with pytest.raises(FCNError, match=r"no preprocessing for an input named 'normals'"):
        preprocess_modality("normals", np.zeros((2, 2)))


def test_synthetic_two_head_and_rgbd_are_deterministic():
    two = create_dataset("synthetic-twohead:3", seed=4, min_size=32, max_size=40)
    again = create_dataset("synthetic-twohead:3", seed=4, min_size=32, max_size=40)
    plain = create_dataset("synthetic:3", seed=4, min_size=32, max_size=40)
    assert two.heads == {"sem": 7, "geo": 3}
    for a, b, p in zip(two, again, plain):
        assert np.array_equal(a.labels["geo"], b.labels["geo"])
        assert np.array_equal(a.label, p.label) and np.array_equal(a.image, p.image)
    rgbd = create_dataset("synthetic-rgbd:2", seed=4, min_size=32, max_size=40)
    s = rgbd[0]
    assert set(s.inputs) == {"hha", "depth"} and np.array_equal(s.image, plain[0].image)
    assert s.inputs["hha"].shape == s.image.shape and s.inputs["hha"].dtype == np.uint8
    # depth carries the classes: the background is nearer than every shape class, on average
    label, depth = s.label, s.inputs["depth"]
    assert depth[label == 0].mean() + 200 < depth[(label > 0) & (label < 255)].mean()
