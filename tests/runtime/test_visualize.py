"""Colour masks, overlays and legends: exact pixel values."""
from __future__ import annotations

import numpy as np
import pytest

from fcn_deploy.constants import VOC_CLASSES, voc_palette
from fcn_deploy.errors import FCNError
from fcn_deploy.runtime.visualize import (IGNORE_COLOR, add_legend, colorize, draw_legend,
                                          label_lut, overlay, present_classes)

PALETTE = [list(c) for c in voc_palette(21)]


def test_colorize_maps_classes_to_palette_colours_in_bgr():
    label = np.array([[0, 1, 2], [15, 255, 40]], np.uint8)
    out = colorize(label, PALETTE)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 1].tolist() == [0, 0, 128]        # aeroplane RGB (128,0,0) -> BGR
    assert out[0, 2].tolist() == [0, 128, 0]        # bicycle (0,128,0)
    assert out[1, 0].tolist() == [128, 128, 192]    # person RGB (192,128,128)
    assert out[1, 1].tolist() == list(IGNORE_COLOR[::-1])  # VOC's ignore colour
    assert out[1, 2].tolist() == [0, 0, 0]          # beyond the palette: black
    lut = label_lut(PALETTE, ignore_label=None)
    assert lut[255].tolist() == [0, 0, 0]


def test_colorize_refuses_what_is_not_a_label_map():
    with pytest.raises(FCNError, match=r"expected a HxW label map, got shape \(2, 2, 3\)"):
        colorize(np.zeros((2, 2, 3), np.uint8), PALETTE)
    with pytest.raises(FCNError, match="expected integer class indices, got dtype float32"):
        colorize(np.zeros((2, 2), np.float32), PALETTE)
    with pytest.raises(FCNError, match="label values must be class indices in 0..255"):
        colorize(np.full((2, 2), 300, np.int32), PALETTE)
    with pytest.raises(FCNError, match="palette colours must be RGB triples in 0..255"):
        colorize(np.zeros((2, 2), np.uint8), [[0, 0, 300]])


def test_overlay_blends_by_opacity_and_keeps_background_and_ignore():
    image = np.full((2, 2, 3), 100, np.uint8)
    label = np.array([[0, 1], [255, 3]], np.uint8)
    half = overlay(image, label, PALETTE, opacity=0.5)
    assert half[0, 0].tolist() == [100, 100, 100]           # background untouched
    assert half[1, 0].tolist() == [100, 100, 100]           # ignore untouched
    assert half[0, 1].tolist() == [50, 50, 114]             # 0.5*100 + 0.5*(0,0,128)
    assert half[1, 1].tolist() == [50, 114, 114]            # bird RGB (128,128,0) -> BGR (0,128,128)
    np.testing.assert_array_equal(overlay(image, label, PALETTE, opacity=0.0), image)
    full = overlay(image, label, PALETTE, opacity=1.0, skip=())
    np.testing.assert_array_equal(full[0], colorize(label, PALETTE)[0])
    with pytest.raises(FCNError, match="opacity must be between 0 and 1, got 1.5"):
        overlay(image, label, PALETTE, opacity=1.5)
    with pytest.raises(FCNError, match="must have the same HxW"):
        overlay(image, np.zeros((3, 3), np.uint8), PALETTE)


def test_present_classes_and_legend_rows():
    label = np.array([[0, 15, 15], [12, 255, 99]], np.uint8)
    assert present_classes(label, 21) == [0, 12, 15]
    panel = draw_legend([0, 12, 15], VOC_CLASSES, PALETTE)
    one = draw_legend([12], VOC_CLASSES, PALETTE)
    assert panel.dtype == np.uint8 and panel.shape[2] == 3
    row = (panel.shape[0] - one.shape[0]) // 2
    assert row > 0 and panel.shape[0] == one.shape[0] + 2 * row  # one row per class
    # each swatch is filled with its class colour (BGR) at the row's left edge
    for k, cid in enumerate([0, 12, 15]):
        y = 6 + k * row + 3 + 5
        rgb = PALETTE[cid]
        assert panel[y, 6 + 5].tolist() == [rgb[2], rgb[1], rgb[0]]
    # the names are drawn: dark text pixels right of the swatch
    assert (panel[:, 40:] < 100).any()
    empty = draw_legend([], VOC_CLASSES, PALETTE)
    assert (empty < 100).any()  # "(none)"


def test_add_legend_appends_a_panel_of_the_image_height():
    image = np.full((120, 80, 3), 50, np.uint8)
    label = np.zeros((120, 80), np.uint8)
    label[10:50, 10:50] = 8
    out = add_legend(image, label, VOC_CLASSES, PALETTE)
    assert out.shape[0] == 120 and out.shape[1] > 80
    np.testing.assert_array_equal(out[:, :80], image)
    short = add_legend(image[:10], label[:10], VOC_CLASSES, PALETTE)  # legend taller than image
    assert short.shape[0] > 10
    np.testing.assert_array_equal(short[:10, :80], image[:10])
    assert (short[10:, :80] == 255).all()
