"""Tiled inference gives the whole image's result; memory is estimated before a whole pass.

The planning is checked by hand; the tiny graph (one 3x3 conv: stride 1, context 1 pixel) and
every registered FCN (width 1/16, exported to ONNX) are run whole and tiled on images big enough
for tiles that touch no image border, and a margin one pixel/stride too small is shown to change
the result, so the equality is not an accident of the image.
"""
from __future__ import annotations

import numpy as np
import pytest

import fcn_deploy.runtime.segmenter as segmenter_module
from fcn_deploy.errors import FCNError
from fcn_deploy.runtime import Segmenter
from fcn_deploy.runtime.memory import estimate_onnx_activation_bytes
from fcn_deploy.tiling import (Span, TileGeometry, plan_axis, plan_tiles, tile_for_pixels,
                               tile_length)
from runtime_fixtures import make_tiny_onnx, random_image, tiny_meta

VGG = TileGeometry(stride=32, context_before=221, context_after=215)
TINY_TILING = {"stride": 1, "context_before": 1, "context_after": 1}


# -- planning ----------------------------------------------------------------------------------

def test_plan_axis_by_hand():
    # core 96 (rounded down to the stride); margins 224 / 215: 535 px, rounded up to the length
    # congruent to 1000 modulo 32 so that the last tile ends at the border and starts on the grid
    assert tile_length(1000, 100, VGG) == 552
    assert plan_axis(1000, 100, VGG) == [
        Span(start=0, stop=552, keep_start=0, keep_stop=288),  # cores 0, 96, 192: window [0, 552)
        Span(start=288 - 224, stop=288 - 224 + 552, keep_start=288, keep_stop=384),
        Span(start=160, stop=712, keep_start=384, keep_stop=480),
        Span(start=256, stop=808, keep_start=480, keep_stop=576),
        Span(start=352, stop=904, keep_start=576, keep_stop=672),
        Span(start=1000 - 552, stop=1000, keep_start=672, keep_stop=1000),  # ends at the border
    ]
    for size, tile in [(1000, 100), (1000, 10), (777, 64), (4000, 1024)]:
        spans = plan_axis(size, tile, VGG)
        assert all(s.start % 32 == 0 and s.stop - s.start == spans[0].stop for s in spans)
        assert spans[0].keep_start == 0 and spans[-1].keep_stop == size
        assert [s.keep_stop for s in spans[:-1]] == [s.keep_start for s in spans[1:]]
        for s in spans:  # each kept pixel's context is inside its tile, or reaches the border
            assert s.start <= max(0, s.keep_start - 224)
            assert s.stop >= min(size, s.keep_stop + 215)
    assert plan_axis(70, 4096, VGG) == [Span(0, 70, 0, 70)]  # one tile = the whole image
    assert plan_axis(520, 64, VGG) == [Span(0, 520, 0, 520)]  # 503 px tiles round up to 520


def test_plan_tiles_and_sizes_from_a_pixel_budget():
    assert len(plan_tiles(700, 1250, 64, VGG)) == 5 * 13
    assert tile_for_pixels(1000 * 1000, VGG) == 512  # 1000 - 224 - 215 - 31 = 530 -> 512
    assert [s.stop - s.start for s in plan_axis(1000, 512, VGG)] == [968, 968]
    with pytest.raises(FCNError, match="max_pixels 1000 is too small.*at least 252004 pixels"):
        tile_for_pixels(1000, VGG)


def test_geometry_is_validated_by_name():
    assert TileGeometry.from_dict(VGG.to_dict()) == VGG
    with pytest.raises(FCNError, match="m.onnx: tiling is missing context_after"):
        TileGeometry.from_dict({"stride": 32, "context_before": 1}, source="m.onnx")
    with pytest.raises(FCNError, match="stride must be an integer >= 1, got 0"):
        TileGeometry(stride=0, context_before=1, context_after=1)
    with pytest.raises(FCNError, match="tiling is missing"):
        tiny_meta(tiling={"stride": 2})


# -- the tiny graph ----------------------------------------------------------------------------

@pytest.fixture
def tiny_tiled(tmp_path):
    return make_tiny_onnx(tmp_path / "tiled.onnx", meta=tiny_meta(tiling=TINY_TILING))


def test_tiny_graph_tiled_equals_whole_and_a_short_margin_does_not(tiny_tiled):
    image = random_image(37, 41, seed=4)
    with Segmenter.open(tiny_tiled) as seg:
        whole_labels, whole_scores = seg.predict(image, scores=True, tile=0)
        labels, scores = seg.predict(image, scores=True, tile=8)
        np.testing.assert_allclose(scores, whole_scores, rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(labels, whole_labels)
        assert seg.tile_size(37, 41, tile=8) == 8
        assert seg.tile_size(37, 41, tile=64) is None  # one tile covers it: a whole pass
        seg._geometry = TileGeometry(stride=1, context_before=0, context_after=1)
        _, short = seg.predict(image, scores=True, tile=8)
    assert np.abs(short - whole_scores).max() > 1e-2


def test_automatic_tiling_above_the_pixel_budget(tiny_tiled):
    image = random_image(30, 20, seed=5)
    with Segmenter.open(tiny_tiled) as seg:
        shapes = []
        infer = seg.runner.infer

        def spy(feeds, **kwargs):
            shapes.append(feeds["image"].shape)
            return infer(feeds, **kwargs)

        seg.runner.infer = spy
        whole = seg.predict(image)
        assert shapes == [(1, 3, 30, 20)]
        shapes.clear()
        tiled = seg.predict(image, max_pixels=100)  # core 8 (10 - 1 - 1): 4 x 3 tiles
        assert len(shapes) == 12 and max(s[2] * s[3] for s in shapes) <= 100
        np.testing.assert_array_equal(tiled, whole)
        batch = seg.predict_batch([image, image[::-1]], max_pixels=100)
        np.testing.assert_array_equal(batch[0], whole)
        np.testing.assert_array_equal(batch[1], seg.predict(image[::-1], tile=0))


def test_memory_estimate_of_the_tiny_graph_by_hand(tiny_tiled):
    # 1x3x10x10: the image (1200 B float32), conv1's output h1 (4x10x10 float32, 1600 B) and
    # conv1's im2col expansion (3 channels x 3x3 kernel x 100 pixels float32, 10800 B) are alive
    # at once; later, h1 + h2 (3200 B) or scores + argmax + labels are less.
    assert estimate_onnx_activation_bytes(tiny_tiled, (1, 3, 10, 10)) == 1200 + 1600 + 10800
    # 2x3x20x30: 14400 + 19200 + 27 x 1200 x 4
    assert estimate_onnx_activation_bytes(tiny_tiled, (2, 3, 20, 30)) == 14400 + 19200 + 129600


def test_whole_image_over_the_memory_available_is_refused_before_running(tiny_tiled,
                                                                         monkeypatch):
    monkeypatch.setattr(segmenter_module, "_CHECK_MEMORY_ABOVE_PIXELS", 0)
    monkeypatch.setattr(segmenter_module, "available_memory_bytes", lambda: 200_000)
    image = random_image(40, 60, seed=6)  # needs (3 + 4 + 27) x 2400 float32 = 326400 B
    with Segmenter.open(tiny_tiled) as seg:
        calls = []
        infer = seg.runner.infer
        seg.runner.infer = lambda feeds, **kw: calls.append(1) or infer(feeds, **kw)
        with pytest.raises(FCNError, match=r"a 40x60 image needs about 318\.8 KiB .* more than "
                                           r"the 195\.3 KiB .* --tile N"):
            seg.predict(image, tile=0)
        assert calls == []
        automatic = seg.predict(image)  # tile=None: tiles instead
        assert len(calls) > 1
        monkeypatch.setattr(segmenter_module, "available_memory_bytes", lambda: 10**9)
        np.testing.assert_array_equal(automatic, seg.predict(image, tile=0))


def test_artifact_without_geometry_of_an_unknown_arch_is_refused_by_name(tiny_onnx):
    with Segmenter.open(tiny_onnx) as seg:
        with pytest.raises(FCNError, match="'tiny_test_net' is not registered.*re-export"):
            seg.predict(random_image(40, 40), tile=8)
        with pytest.raises(FCNError, match="tile must be a tile size in pixels"):
            seg.predict(random_image(40, 40), tile=-1)


# -- every registered FCN ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry_models():
    torch = pytest.importorskip("torch")
    from fcn_deploy.models import create_model, list_models

    out = {}
    for name in list_models(multi=False):
        torch.manual_seed(0)
        model = create_model(name, num_classes=5, width=1 / 16)
        with torch.no_grad():  # score layers start at zero; give them weights so labels vary
            for pname, p in model.named_parameters():
                if pname.startswith("score"):
                    p.normal_(0.0, 0.5)
        out[name] = model
    return out


def _all_models():
    try:
        from fcn_deploy.models import list_models
        return list_models(multi=False)
    except ImportError:  # no torch: the registry tests skip
        return ["fcn8s_vgg16"]


@pytest.mark.parametrize("name", _all_models())
def test_every_registered_fcn_tiled_equals_whole(name, registry_models, tmp_path):
    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models.analysis import tile_geometry

    model = registry_models[name]
    meta = ModelMeta.default(name, 5, arch_kwargs=dict(model.arch_kwargs))
    path = tmp_path / f"{name}.onnx"
    export_model(model, meta, path, outputs="scores", verify=False, sample_shape=(1, 3, 64, 64))
    geometry = tile_geometry(model)
    core = 64
    # tall enough for tiles with image data on both sides, and a height at which the tiles'
    # length needs no rounding to the grid (no spare context); 2 tiles across; odd sizes
    height = geometry.margin_before + core + geometry.context_after + 4 * 32
    image = random_image(height, 101, seed=7)
    with Segmenter.open(path, backend="onnxruntime") as seg:
        assert seg.meta.tiling == geometry.to_dict()  # export wrote it
        whole_labels, whole = seg.predict(image, scores=True, tile=0)
        labels, tiled = seg.predict(image, scores=True, tile=core)
        tol = 1e-6 * float(np.abs(whole).max())  # float rounding; exact on this machine
        np.testing.assert_allclose(tiled, whole, rtol=0, atol=tol)
        top2 = np.sort(whole, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 2 * tol
        np.testing.assert_array_equal(labels[clear], whole_labels[clear])
        if name == "fcn8s_vgg16":  # the contexts are tight: one pixel less after, or one
            for short in (TileGeometry(32, geometry.context_before, geometry.context_after - 1),
                          TileGeometry(32, geometry.context_before - 32,
                                       geometry.context_after)):
                # stride less before, and some kept pixel changes (a height where the tiles
                # get no extra context from rounding their length to the grid)
                needed = short.margin_before + core + short.context_after
                other = random_image(needed + 4 * 32, 101, seed=8)
                seg._geometry = None
                _, right = seg.predict(other, scores=True, tile=0)
                seg._geometry = short
                _, wrong = seg.predict(other, scores=True, tile=core)
                assert np.abs(wrong - right).max() > 5 * tol


def test_old_artifact_without_tiling_metadata_falls_back_to_the_arch(registry_models, tmp_path):
    import onnx

    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models.analysis import tile_geometry

    model = registry_models["fcn_alexnet"]
    meta = ModelMeta.default("fcn_alexnet", 5, arch_kwargs=dict(model.arch_kwargs))
    path = tmp_path / "old.onnx"
    export_model(model, meta, path, outputs="scores", verify=False, sample_shape=(1, 3, 64, 64))
    proto = onnx.load(str(path))
    old = [p for p in proto.metadata_props if p.key != "fcn.tiling"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(old)
    onnx.save(proto, str(path))
    image = random_image(480, 70, seed=8)
    with Segmenter.open(path) as seg:
        assert seg.meta.tiling == {}
        assert seg.tile_geometry == tile_geometry(model)
        np.testing.assert_array_equal(seg.predict(image, tile=32), seg.predict(image, tile=0))


def test_fcn_segment_tile_options(tmp_path, tiny_tiled, monkeypatch, capsys):
    from fcn_deploy.cli.segment import main
    from fcn_deploy.imageio import read_label, write_image

    write_image(tmp_path / "big.png", random_image(45, 70, seed=9))
    args = ["--engine", str(tiny_tiled), str(tmp_path / "big.png")]
    assert main(args + ["-o", str(tmp_path / "whole"), "--tile", "0"]) == 0
    assert main(args + ["-o", str(tmp_path / "tiled"), "--tile", "16"]) == 0
    assert main(args + ["-o", str(tmp_path / "auto"), "--max-pixels", "300"]) == 0
    whole = read_label(tmp_path / "whole" / "big.png")
    np.testing.assert_array_equal(read_label(tmp_path / "tiled" / "big.png"), whole)
    np.testing.assert_array_equal(read_label(tmp_path / "auto" / "big.png"), whole)
    capsys.readouterr()
    assert main(args + ["-o", str(tmp_path / "x"), "--max-pixels", "0"]) == 2
    assert capsys.readouterr().err == ("error: --max-pixels must be a positive number of pixels, "
                                       "got 0\n")
    assert not (tmp_path / "x").exists()
    monkeypatch.setattr(segmenter_module, "_CHECK_MEMORY_ABOVE_PIXELS", 0)
    monkeypatch.setattr(segmenter_module, "available_memory_bytes", lambda: 1000)
    assert main(args + ["-o", str(tmp_path / "y"), "--tile", "0"]) == 1
    err = capsys.readouterr().err
    assert "big.png: a 45x70 image needs about" in err and "--tile N" in err
    assert not (tmp_path / "y" / "big.png").exists()


def test_fcn_bench_memory_whole_vs_tiled(tmp_path, tiny_tiled, capsys):
    import json

    from fcn_deploy.cli.bench import main

    assert main(["--engine", str(tiny_tiled), "--memory", "--shape", "1x3x300x200", "--tile",
                 "64", "--threads", "1", "-o", str(tmp_path), "--quiet"]) == 0
    records = json.loads((tmp_path / "memory_tiled.json").read_text())
    assert [r["mode"] for r in records] == ["whole", "tiled"]
    assert [r["tiles"] for r in records] == [1, 5 * 4]
    # image + h1 + conv1's im2col (see the by-hand test above)
    assert all(r["estimate"] == (3 + 4 + 27) * 60000 * 4 and r["refused"] == "" for r in records)
    assert all(0 < r["model_rss"] <= r["peak_rss"] and r["seconds"] > 0 for r in records)
    out = capsys.readouterr().out
    assert "| whole | 300x200 | 1 |" in out and "| tiled | 300x200 | 20 |" in out
    assert main(["--engine", str(tiny_tiled), "--tile", "64"]) == 2
    assert "--tile sets the tile size of --memory" in capsys.readouterr().err


def test_fcn_bench_memory_errors_are_one_line_before_any_work(tmp_path, tiny_tiled, capsys):
    from fcn_deploy.cli.bench import main

    # A bad option reaches the measuring child process: its FCNError, not its traceback.
    assert main(["--engine", str(tiny_tiled), "--memory", "--shape", "1x3x64x64", "--tile", "32",
                 "--threads", "-1", "-o", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: intra_op_threads must be an integer >= 0 (0 = ONNX Runtime's "
                   "default), got -1\n")
    # A report under a missing folder is refused before measuring, not after.
    assert main(["--engine", str(tiny_tiled), "--memory", "--shape", "1x3x64x64", "--tile", "32",
                 "--name", "missing/report", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: output folder {tmp_path / 'missing'} does not exist; create it first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [tiny_tiled.name]
