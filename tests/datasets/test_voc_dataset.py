"""PASCAL VOC loader on a tiny VOCdevkit tree written in tmp_path."""
from __future__ import annotations

import numpy as np
import pytest
from dataset_trees import make_label, write_palette_png

from fcn_deploy.constants import VOC_CLASSES
from fcn_deploy.datasets import VOCSegmentation, create_dataset
from fcn_deploy.errors import FCNError


def test_reads_palette_indices_exactly(voc_tree):
    devkit, labels = voc_tree
    ds = VOCSegmentation(devkit, image_set="train")
    assert len(ds) == 3 and ds.ids == ["2007_000032", "2007_000039", "2008_000123"]
    assert ds.num_classes == 21 and ds.class_names == list(VOC_CLASSES)
    assert ds.ignore_label == 255 and ds.palette[15] == [192, 128, 128]
    for sample in ds:
        np.testing.assert_array_equal(sample.label, labels[sample.name])
        assert sample.label.dtype == np.uint8
        assert sample.image.dtype == np.uint8 and sample.image.shape == sample.label.shape + (3,)
    assert 255 in ds[0].label and 15 in ds[0].label


def test_both_root_forms_and_default_val(voc_tree):
    devkit, _ = voc_tree
    a = VOCSegmentation(devkit)
    b = VOCSegmentation(devkit / "VOC2012")
    assert a.root == b.root == devkit / "VOC2012"
    assert a.image_set == "val" and a.ids == b.ids == ["2008_000123", "2007_000032"]
    with pytest.raises(FCNError, match=r"has neither JPEGImages/ nor VOC2011/ \(found VOC2012"):
        VOCSegmentation(devkit, year=2011)


def test_list_file(voc_tree, tmp_path):
    devkit, labels = voc_tree
    lst = tmp_path / "seg11valid.txt"
    lst.write_text("2007_000039\n")
    for ds in (VOCSegmentation(devkit, list_file=lst), VOCSegmentation(devkit, image_set=str(lst)),
               create_dataset(f"voc:{devkit}:{lst}")):
        assert ds.ids == ["2007_000039"] and ds.image_set == "seg11valid"
        np.testing.assert_array_equal(ds[0].label, labels["2007_000039"])


def test_index_errors_and_negative_index(voc_tree):
    devkit, _ = voc_tree
    ds = VOCSegmentation(devkit, image_set="train")
    assert ds[-1].name == "2008_000123"
    with pytest.raises(IndexError):
        ds[3]
    assert [s.name for s in ds] == ds.ids


def test_missing_things(voc_tree, tmp_path):
    devkit, _ = voc_tree
    year = devkit / "VOC2012"
    with pytest.raises(FCNError, match="VOC root .*nowhere does not exist"):
        VOCSegmentation(tmp_path / "nowhere")
    with pytest.raises(FCNError, match=r"Segmentation/test\.txt does not exist; available sets: "
                                       r"train, val"):
        VOCSegmentation(devkit, image_set="test")
    with pytest.raises(FCNError, match="VOC image list .*missing.txt does not exist"):
        VOCSegmentation(devkit, list_file=tmp_path / "missing.txt")
    (year / "JPEGImages" / "2007_000039.jpg").unlink()
    (year / "SegmentationClass" / "2008_000123.png").unlink()
    with pytest.raises(FCNError, match=r"2 files listed by .*train\.txt are missing: .*"
                                       r"2007_000039\.jpg, .*2008_000123\.png"):
        VOCSegmentation(devkit, image_set="train")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(FCNError, match="empty.txt is empty"):
        VOCSegmentation(devkit, list_file=empty)


def test_missing_label_folder(voc_tree):
    devkit, _ = voc_tree
    folder = devkit / "VOC2012" / "SegmentationClass"
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    with pytest.raises(FCNError, match="VOC folder .*SegmentationClass does not exist"):
        VOCSegmentation(devkit)


def test_out_of_range_label_values(voc_tree):
    devkit, _ = voc_tree
    bad = make_label(20, 30, 0)
    bad[0, 0], bad[1, 1] = 21, 200
    path = devkit / "VOC2012" / "SegmentationClass" / "2007_000032.png"
    write_palette_png(path, bad)
    ds = VOCSegmentation(devkit, image_set="train")
    with pytest.raises(FCNError, match=r"2007_000032\.png: label values 21, 200 are out of "
                                       r"range; expected class indices 0\.\.20 or 255"):
        ds[0]
    # with fewer classes, a valid VOC label is out of range too
    with pytest.raises(FCNError, match=r"label values .*15.*expected class indices 0\.\.2 or 255"):
        VOCSegmentation(devkit, image_set="train", num_classes=3)[1]


def test_size_mismatch(voc_tree):
    devkit, _ = voc_tree
    write_palette_png(devkit / "VOC2012" / "SegmentationClass" / "2007_000039.png",
                      make_label(10, 12, 1))
    ds = VOCSegmentation(devkit, image_set="train")
    with pytest.raises(FCNError, match=r"image .*2007_000039\.jpg is 29x21 \(WxH\) but its label "
                                       r".*2007_000039\.png is 12x10; expected the same size"):
        ds[1]
    with pytest.raises(FCNError, match=r"1 of 3 items .* failed to load: .*2007_000039"):
        ds.verify()


def test_create_dataset_voc_spec(voc_tree):
    devkit, _ = voc_tree
    assert create_dataset(f"voc:{devkit}").image_set == "val"
    # options meant for another kind (seed: synthetic) are dropped, so one set serves two specs
    ds = create_dataset(f"voc:{devkit}:train", seed=1, min_size=None, year=2012)
    assert len(ds) == 3
    with pytest.raises(FCNError, match=r"dataset option\(s\) yeer not understood .*dataset "
                                       r"options are .*image_set.*seed.*year"):
        create_dataset(f"voc:{devkit}", yeer=2011)
