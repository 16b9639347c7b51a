"""Multi-input (NYUDv2 colour + HHA / depth, HHA only) and multi-head (SIFT Flow sem + geo) nets
through the Python runtime: the Segmenter on the checkpoint (PyTorch) and on the exported graph
(ONNX Runtime) against the PyTorch model itself, per head; tiles; the input checks; fcn-segment.

The nets are the registered ones at width 1/16 with 5 classes (geo: 3), exported once per module.
"""
from __future__ import annotations

import numpy as np
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.runtime import Segmenter, open_runner
from runtime_fixtures import MULTI_IO_NETS, make_multi_io_net, random_image, random_inputs_for

torch = pytest.importorskip("torch")

H, W = 37, 45  # odd, and not the export's 64x64 sample
PH, PW = 75, 101  # for parity: a few stride-32 cells, so that even FCN-32s' labels vary


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_io")
    out = {}
    for arch in MULTI_IO_NETS:
        model, meta, pt, onnx_path = make_multi_io_net(folder, arch)
        out[arch] = {"model": model, "meta": meta, "pt": pt, "onnx": onnx_path}
    return out


def _by_hand(spec, data: np.ndarray) -> np.ndarray:
    """The reference's preprocessing written out here (not the library's): colour/HHA images in
    the spec's channel order minus the mean; depth as log(max(d, 1)) minus the mean."""
    if spec.encoding == "log_depth":
        return (np.log(np.maximum(data.astype(np.float64), 1.0)) - spec.mean[0])[None]
    img = data if spec.channel_order == "BGR" else data[:, :, ::-1]
    return (img.astype(np.float64) - np.asarray(spec.mean)).transpose(2, 0, 1)


def _reference(net, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{head: CxHxW scores} of the PyTorch model itself, fed by input name."""
    specs = net["meta"].input_specs()
    tensors = [torch.from_numpy(_by_hand(s, inputs[s.name])[None].astype(np.float32))
               for s in specs]
    with torch.no_grad():
        out = net["model"](tensors[0], **{s.name: t for s, t in zip(specs[1:], tensors[1:])})
    out = out if isinstance(out, dict) else {"score": out}
    return {head: scores[0].numpy() for head, scores in out.items()}


def _predict(seg, inputs, **kwargs):
    first, *others = seg.input_names
    return seg.predict(inputs[first], **{n: inputs[n] for n in others}, **kwargs)


@pytest.mark.parametrize("arch", list(MULTI_IO_NETS))
@pytest.mark.parametrize("kind", ["pt", "onnx"])
def test_segmenter_equals_pytorch_per_head(arch, kind, nets):
    net = nets[arch]
    inputs = random_inputs_for(net["meta"], PH, PW)
    reference = _reference(net, inputs)
    with Segmenter.open(net[kind]) as seg:
        assert seg.backend == ("torch" if kind == "pt" else "onnxruntime")
        assert seg.input_names == list(net["model"].input_channels)
        result = _predict(seg, inputs, scores=True)
        labels_only = _predict(seg, inputs)
    if arch == "siftflow_fcn16s":  # {head: (labels, scores)}, heads in order
        assert list(result) == ["sem", "geo"] and list(labels_only) == ["sem", "geo"]
        assert [result[h][1].shape[0] for h in result] == [5, 3]
    else:  # a single head keeps the (labels, scores) tuple
        assert isinstance(result, tuple)
        result, labels_only = {"score": result}, {"score": labels_only}
    for head, (labels, scores) in result.items():
        ref = reference[head]
        assert labels.shape == (PH, PW) and labels.dtype == np.uint8
        assert scores.shape == ref.shape and scores.dtype == np.float32
        np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        top2 = np.sort(ref, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-3 * np.abs(ref).max()
        assert clear.mean() > 0.9 and len(np.unique(labels)) >= 2  # a meaningful comparison
        np.testing.assert_array_equal(labels[clear], ref.argmax(0)[clear])
        np.testing.assert_array_equal(labels_only[head], labels)


def test_runners_name_every_input_and_head_output_alike(nets):
    net = nets["siftflow_fcn16s"]
    with open_runner(net["pt"]) as torch_runner, open_runner(net["onnx"]) as ort_runner:
        names = ["scores_sem", "scores_geo", "labels_sem", "labels_geo"]
        assert torch_runner.output_names == ort_runner.output_names == names
        assert [t.shape[1] for t in torch_runner.outputs[:2]] == [5, 3]
        x = np.zeros((2, 3, 40, 36), np.float32)
        out = torch_runner.infer({"image": x}, outputs=["labels_geo", "scores_sem"])
        assert sorted(out) == ["labels_geo", "scores_sem"]
        assert out["labels_geo"].shape == (2, 40, 36) and out["scores_sem"].shape == (2, 5, 40, 36)
    net = nets["nyud_fcn32s_color_d"]
    with open_runner(net["pt"]) as runner:
        assert [(t.name, t.shape) for t in runner.inputs] == [
            ("image", (None, 3, None, None)), ("depth", (None, 1, None, None))]
        with pytest.raises(FCNError, match=r"inputs \['image'\] do not match.*depth float32"):
            runner.infer({"image": np.zeros((1, 3, 32, 32), np.float32)})
    for path in (net["pt"], net["onnx"]):  # every backend: one N x H x W for all inputs
        with open_runner(path) as runner:
            with pytest.raises(FCNError, match=r"the inputs of one call must have the same batch, "
                                               r"height and width; got \(N x H x W\) image "
                                               r"1x32x32, depth 1x32x30"):
                runner.infer({"image": np.zeros((1, 3, 32, 32), np.float32),
                              "depth": np.zeros((1, 1, 32, 30), np.float32)})


def test_head_class_counts_are_checked_per_head(nets, tmp_path):
    import onnx

    from fcn_deploy.meta import write_onnx_meta

    net = nets["siftflow_fcn16s"]
    model = onnx.load(str(net["onnx"]))
    heads = [dict(h) for h in net["meta"].heads]
    heads[1].update(num_classes=4, class_names=["a", "b", "c", "d"], palette=[[0, 0, 0]] * 4)
    write_onnx_meta(model, net["meta"].replace(heads=heads, outputs="both"))
    bad = tmp_path / "bad_geo.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(FCNError, match=r"output 'scores_geo' has 3 channels but the metadata "
                                       r"lists 4 classes for head 'geo'"):
        Segmenter.open(bad)


def test_input_errors_name_the_input_and_what_was_expected(nets):
    net = nets["nyud_fcn16s_color_hha"]
    inputs = random_inputs_for(net["meta"], H, W)
    image, hha = inputs["image"], inputs["hha"]
    with Segmenter.open(net["onnx"]) as seg:
        assert seg.input_names == ["image", "hha"]
        with pytest.raises(FCNError, match=r"missing input 'hha': nyud_fcn16s_color_hha takes "
                                           r"'image' \(the positional argument\) and hha="):
            seg.predict(image)
        with pytest.raises(FCNError, match=r"unexpected input 'depth'"):
            seg.predict(image, hha=hha, depth=np.ones((H, W), np.uint16))
        with pytest.raises(FCNError, match=r"input 'hha' is 36x45 but the image is 37x45; every "
                                           r"input of a net must have the image's height"):
            seg.predict(image, hha=hha[:-1])
        with pytest.raises(FCNError, match=r"input 'hha': got a float32 array of shape "
                                           r"\(37, 45, 3\); expected a uint8 HxWx3 image"):
            seg.predict(image, hha=hha.astype(np.float32))
        with pytest.raises(FCNError, match=r"input 'hha' has 1 item\(s\) for 2 image\(s\)"):
            seg.predict_batch([image, image], hha=[hha])
        with pytest.raises(FCNError, match=r"input 'hha': .*does not exist"):
            seg.predict(image, hha="no/such/hha.png")
    with Segmenter.open(nets["nyud_fcn32s_color_d"]["onnx"]) as seg:
        with pytest.raises(FCNError, match=r"input 'depth': got a uint8 array of shape "
                                           r"\(37, 45, 3\); expected an HxW depth map"):
            seg.predict(image, depth=image)
    with Segmenter.open(nets["nyud_fcn32s_hha"]["onnx"]) as seg:
        assert seg.input_names == ["hha"]
        with pytest.raises(FCNError, match=r"input 'hha' is nyud_fcn32s_hha's first input: pass "
                                           "it as the positional argument"):
            seg.predict(image, hha=hha)


def test_batches_and_tiles_equal_single_whole_images(nets):
    from fcn_deploy.models.analysis import tile_geometry

    for arch in ("nyud_fcn16s_color_hha", "siftflow_fcn16s"):
        net = nets[arch]
        geometry = tile_geometry(net["model"])
        core = 64
        height = geometry.margin_before + core + geometry.context_after + 4 * 32
        with Segmenter.open(net["onnx"]) as seg:
            a, b = random_inputs_for(seg.meta, height, 101, seed=3), \
                random_inputs_for(seg.meta, height, 101, seed=7)
            whole = [_predict(seg, x, scores=True, tile=0) for x in (a, b)]
            tiled = _predict(seg, a, scores=True, tile=core)
            first, *others = seg.input_names
            batch = seg.predict_batch([a[first], b[first]], scores=True, tile=0,
                                      **{n: [a[n], b[n]] for n in others})
        if not seg.multi_head:
            whole = [{"score": w} for w in whole]
            tiled, batch = {"score": tiled}, {"score": batch}
        for head in whole[0]:
            scores = whole[0][head][1]
            tol = 1e-5 * float(np.abs(scores).max())
            np.testing.assert_allclose(tiled[head][1], scores, rtol=0, atol=tol)
            top2 = np.sort(scores, axis=0)[-2:]
            clear = (top2[1] - top2[0]) > 2 * tol
            np.testing.assert_array_equal(tiled[head][0][clear], whole[0][head][0][clear])
            for k in range(2):  # a batch of two gives each image's own result
                np.testing.assert_allclose(batch[head][1][k], whole[k][head][1], rtol=0, atol=tol)


def test_colorize_and_overlay_use_the_heads_palette(nets):
    from fcn_deploy.runtime.visualize import add_legend, colorize, overlay

    with Segmenter.open(nets["siftflow_fcn16s"]["onnx"]) as seg:
        image = random_image(H, W)
        labels = seg.predict(image)
        geo = seg.head("geo")
        assert geo.class_names == ("horizontal", "vertical", "sky")
        np.testing.assert_array_equal(seg.colorize(labels["geo"], head="geo"),
                                      colorize(labels["geo"], geo.palette))
        np.testing.assert_array_equal(seg.colorize(labels["sem"]),
                                      colorize(labels["sem"], seg.meta.palette))
        with_legend = seg.overlay(image, labels["geo"], head="geo", legend=True)
        want = add_legend(overlay(image, labels["geo"], geo.palette), labels["geo"],
                          geo.class_names, geo.palette)
        np.testing.assert_array_equal(with_legend, want)
        assert not np.array_equal(with_legend, seg.overlay(image, labels["geo"], legend=True))
        with pytest.raises(FCNError, match="siftflow_fcn16s has no head 'depth'; its heads are "
                                           "sem, geo"):
            seg.colorize(labels["geo"], head="depth")


# -- fcn-segment -----------------------------------------------------------------------------------

def test_segment_cli_writes_one_png_per_head_in_its_palette(nets, tmp_path, capsys):
    import cv2
    from PIL import Image

    from fcn_deploy.cli.segment import main

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    image = random_image(H, W, seed=5)
    cv2.imwrite(str(src / "a.png"), image)
    net = nets["siftflow_fcn16s"]
    assert main(["--engine", str(net["onnx"]), str(src), "-o", str(out), "--overlay",
                 "--scores"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a_geo.png", "a_geo_overlay.png", "a_geo_scores.npy",
        "a_sem.png", "a_sem_overlay.png", "a_sem_scores.npy"]
    with Segmenter.open(net["onnx"]) as seg:
        want = seg.predict(image, scores=True)
        for head in ("sem", "geo"):
            with Image.open(out / f"a_{head}.png") as png:
                assert png.mode == "P"
                np.testing.assert_array_equal(np.array(png), want[head][0])
                colours = np.array(png.getpalette()[:3 * seg.head(head).num_classes]).reshape(-1, 3)
            np.testing.assert_array_equal(colours, np.array(seg.head(head).palette))
            np.testing.assert_array_equal(np.load(out / f"a_{head}_scores.npy"), want[head][1])
    assert "segmented 1 of 1 images" in capsys.readouterr().out


def test_segment_cli_reads_other_inputs_from_folders_by_stem(nets, tmp_path, capsys):
    import cv2

    from fcn_deploy.cli.segment import main

    src, depth_dir, out = tmp_path / "in", tmp_path / "depth", tmp_path / "out"
    src.mkdir()
    depth_dir.mkdir()
    net = nets["nyud_fcn32s_color_d"]
    inputs = random_inputs_for(net["meta"], H, W)
    assert inputs["depth"].max() > 255  # millimetres: a 16-bit PNG
    cv2.imwrite(str(src / "a.png"), inputs["image"])
    cv2.imwrite(str(src / "b.png"), inputs["image"])  # no depth for b
    cv2.imwrite(str(depth_dir / "a.png"), inputs["depth"])
    rc = main(["--engine", str(net["onnx"]), str(src), "-o", str(out), "--scores",
               "--input", f"depth={depth_dir}"])
    assert rc == 1  # b failed, a was written
    err = capsys.readouterr().err
    assert f"b.png: no depth input for it: expected {depth_dir / 'b'}.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_scores.npy"]
    with Segmenter.open(net["onnx"]) as seg:
        _, scores = seg.predict(inputs["image"], depth=inputs["depth"], scores=True)
    np.testing.assert_array_equal(np.load(out / "a_scores.npy"), scores)  # 16-bit depth read

    # the net's inputs are required by name
    rc = main(["--engine", str(net["onnx"]), str(src / "a.png"), "-o", str(tmp_path / "o2")])
    assert rc == 2
    assert ("takes its other inputs depth (--input depth=DIR); got no --input"
            in capsys.readouterr().err)
    rc = main(["--engine", str(net["onnx"]), str(src / "a.png"), "-o", str(tmp_path / "o2"),
               "--input", f"hha={depth_dir}"])
    assert rc == 2 and "got --input hha=" in capsys.readouterr().err
