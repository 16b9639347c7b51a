"""Folder datasets: images matched to masks by stem, unlabelled image folders."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from dataset_trees import make_label, write_palette_png

from fcn_deploy.datasets import FolderDataset, ImageFolder, create_dataset
from fcn_deploy.errors import FCNError


@pytest.fixture
def folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    labels = {}
    for k, stem in enumerate(["b_img", "a_img", "c_img"]):
        cv2.imwrite(str(images / f"{stem}.png"), np.full((12, 14, 3), 40 * k, np.uint8))
        labels[stem] = make_label(12, 14, k)
        write_palette_png(masks / f"{stem}.png", labels[stem])
    (images / "notes.txt").write_text("not an image")
    return images, masks, labels


def test_matches_masks_by_stem(folders):
    images, masks, labels = folders
    ds = FolderDataset(images, masks)
    assert [s.name for s in ds] == ["a_img", "b_img", "c_img"]  # sorted, .txt skipped
    for s in ds:
        np.testing.assert_array_equal(s.label, labels[s.name])
        assert s.image.shape == (12, 14, 3)
    spec = create_dataset(f"folder:{images},{masks}")
    np.testing.assert_array_equal(spec[2].label, labels["c_img"])


def test_mask_suffix(folders, tmp_path):
    images, masks, labels = folders
    other = tmp_path / "other_masks"
    other.mkdir()
    for stem, label in labels.items():
        write_palette_png(other / f"{stem}_mask.png", label)
    ds = FolderDataset(images, other, mask_suffix="_mask.png")
    np.testing.assert_array_equal(ds[0].label, labels["a_img"])


def test_missing_masks(folders):
    images, masks, labels = folders
    (masks / "b_img.png").unlink()
    (masks / "c_img.png").unlink()
    with pytest.raises(FCNError, match=r"2 of 3 images in .*images have no mask <stem>\.png in "
                                       r".*masks: b_img\.png, c_img\.png \(pass labels_required"):
        FolderDataset(images, masks)
    ds = FolderDataset(images, masks, labels_required=False)
    assert ds[0].label is not None and ds[1].label is None and ds[2].label is None
    with pytest.raises(FCNError, match="mask folder .*nope does not exist"):
        FolderDataset(images, images.parent / "nope")


def test_unlabelled_image_folder(folders):
    images, _, _ = folders
    for ds in (ImageFolder(images), create_dataset(f"folder:{images}")):
        assert len(ds) == 3 and all(s.label is None for s in ds)
        assert ds[1].image.shape == (12, 14, 3) and ds[1].image[0, 0, 0] == 0
    with pytest.raises(FCNError, match="image folder .*missing does not exist"):
        ImageFolder(images.parent / "missing")
    empty = images.parent / "empty"
    empty.mkdir()
    with pytest.raises(FCNError, match="image folder .*empty holds no images"):
        ImageFolder(empty)


def test_corrupt_image_named(folders):
    images, masks, _ = folders
    (images / "a_img.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = FolderDataset(images, masks)
    with pytest.raises(FCNError, match=r"image .*a_img\.png could not be decoded"):
        ds[0]
    with pytest.raises(FCNError, match=r"1 of 3 items .*a_img\.png could not be decoded"):
        ds.verify()
    ds[1]  # the others still load


def test_size_mismatch_and_colour_mask(folders):
    images, masks, _ = folders
    write_palette_png(masks / "a_img.png", make_label(10, 14, 0))
    with pytest.raises(FCNError, match=r"a_img\.png is 14x12 \(WxH\) but its label .*a_img\.png "
                                       r"is 14x10"):
        FolderDataset(images, masks)[0]
    cv2.imwrite(str(masks / "b_img.png"), np.zeros((12, 14, 3), np.uint8))
    with pytest.raises(FCNError, match=r"label .*b_img\.png has mode RGB; expected a palette"):
        FolderDataset(images, masks)[1]


def test_unknown_spec():
    with pytest.raises(FCNError, match=r"dataset spec 'coco:/x' is not understood; expected one "
                                       r"of: voc:.*sbd:.*folder:.*synthetic"):
        create_dataset("coco:/x")
    with pytest.raises(FCNError, match="not a number of images"):
        create_dataset("synthetic:many")
