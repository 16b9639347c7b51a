"""fcn-import: published weights (Caffe caffemodels, pytorch-fcn state_dicts) -> checkpoints.

Every file here is written from random weights with our schema (nothing can be downloaded), and
every imported model is compared with caffe_reference.caffe_forward, a Caffe-semantics forward
pass over the same arrays that does not use fcn_deploy's model classes.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from caffe_reference import ARCH, NETS, caffe_forward, reference_net, state_dict_of, to_prototxt

from fcn_deploy.constants import PASCAL_CONTEXT_59_CLASSES, VOC_CLASSES
from fcn_deploy.errors import FCNError
from fcn_deploy.models import import_weights, load_checkpoint, load_model
from fcn_deploy.models import caffe
from fcn_deploy.models.caffe import CaffeLayer


def _bgr(h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g) * 255.0 - 120.0


def _assert_same_output(model: torch.nn.Module, layers: list[CaffeLayer], sizes) -> None:
    """The imported model computes the Caffe net: float32 sums in another order, nothing more."""
    for h, w in sizes:
        x = _bgr(h, w, seed=h * 1000 + w)
        with torch.inference_mode():
            ours = model(x)
        ref = caffe_forward(layers, x)
        assert ours.shape == ref.shape == (1, ref.shape[1], h, w)
        scale = float(ref.abs().max())
        assert scale > 0
        err = float((ours - ref).abs().max())
        assert err <= 2e-5 * scale, (h, w, err, scale)


def _write(path, layers, **kwargs):
    return caffe.write_caffemodel(path, layers, **kwargs)


# -- caffemodel, every architecture ---------------------------------------------------------

@pytest.mark.parametrize("net,num_classes", [(n, 21) for n in NETS]
                         + [("fcn16s", 60), ("fcn8s", 60)])  # PASCAL-Context: 59 + background
def test_caffemodel_roundtrip_equals_the_caffe_net(net, num_classes, tmp_path):
    layers = reference_net(net, num_classes=num_classes, seed=len(net) + num_classes)
    src = _write(tmp_path / f"{net}.caffemodel", layers, name=net)
    out = tmp_path / "model.pt"
    report = import_weights(src, out)
    assert report.arch == ARCH[net] and report.arch_reason.startswith("inferred")
    assert report.arch_kwargs == {"num_classes": num_classes, "width": 0.0625,
                                  "learn_upsampling": False}
    weighted = [l for l in layers if l.blobs]
    assert len(report.matched) == sum(len(l.blobs) for l in weighted)
    assert {r.source.split(" ")[0] for r in report.matched} == {l.name for l in weighted}
    assert report.check_shape == (1, num_classes, 32, 32)
    model, meta = load_model(out)
    expected = VOC_CLASSES if num_classes == 21 else PASCAL_CONTEXT_59_CLASSES
    assert meta.class_names == list(expected) and meta.channel_order == "BGR"
    assert meta.extra["imported_from"]["file"] == f"{net}.caffemodel"
    assert load_checkpoint(out)["training_state"] is None
    _assert_same_output(model, layers, [(37, 45), (64, 51)])


@pytest.mark.parametrize("net", ["fcn8s", "fcn-alexnet"])
def test_legacy_v1_layers_with_num_channels_height_width_and_double_data(net, tmp_path):
    layers = reference_net(net, seed=3)
    # V1LayerParameter has no Crop type: the legacy file holds every other layer.
    v1 = [l for l in layers if l.type != "Crop"]
    src = _write(tmp_path / "v1.caffemodel", v1, legacy=True, blob_dims="legacy", dtype="float64")
    net_read = caffe.read_caffemodel(src)
    assert net_read.legacy
    conv = next(l for l in net_read.layers if l.name == "score_fr")
    assert conv.type == "Convolution"
    assert [b.shape for b in conv.blobs] == [(21, 256, 1, 1), (1, 1, 1, 21)]
    report = import_weights(src, tmp_path / "m.pt")
    assert "legacy V1" in report.source_format and report.arch == ARCH[net]
    bias = next(r for r in report.matched if r.parameter == "score_fr.bias")
    assert bias.shape == (21,) and bias.source_shape == (1, 1, 1, 21)
    model, _ = load_model(tmp_path / "m.pt")
    _assert_same_output(model, layers, [(41, 39)])


@pytest.mark.parametrize("net", ["fcn8s", "fcn-alexnet"])
def test_full_width_import_equals_the_caffe_net(net, tmp_path):
    """The published sizes: FCN-8s VGG16 (134M parameters, 513 MiB) and FCN-AlexNet."""
    torch.set_num_threads(2)  # restored by the one_thread fixture
    layers = reference_net(net, width=1.0, seed=11)
    src = _write(tmp_path / "full.caffemodel", layers)
    report = import_weights(src, None)  # verify only: a 540 MB checkpoint is not needed here
    assert report.arch == ARCH[net] and report.arch_kwargs["width"] == 1.0
    n_params = sum(int(np.prod(r.shape)) for r in report.matched if r.shape)
    assert n_params == {"fcn8s": 134_489_759, "fcn-alexnet": 56_954_261 + 21 * 21 * 63 * 63}[net]
    src.unlink()
    _assert_same_output(report.model, layers, [(24, 31)])


@pytest.mark.parametrize("legacy", [False, True])
def test_inner_product_fc6_and_channelwise_deconvolution_layouts(legacy, tmp_path):
    """fc6 stored as an InnerProduct (out, C*7*7) and upscore as a group=C deconvolution
    (C, 1, k, k): the same network, in the other layouts Caffe can hold it in."""
    layers = reference_net("fcn32s", seed=17)
    up = next(l for l in layers if l.name == "upscore")
    c = up.conv.num_output
    up.blobs = [np.random.default_rng(0).standard_normal((c, 1, 64, 64), dtype=np.float32) / 32]
    up.conv.group = c
    fc6 = next(l for l in layers if l.name == "fc6")
    ip = CaffeLayer("fc6", "InnerProduct", fc6.bottoms, fc6.tops,
                    [fc6.blobs[0].reshape(fc6.blobs[0].shape[0], -1), fc6.blobs[1]])
    in_file = [ip if l is fc6 else l for l in layers if not (legacy and l.type == "Crop")]
    src = _write(tmp_path / "x.caffemodel", in_file, legacy=legacy,
                 blob_dims="legacy" if legacy else "shape")
    report = import_weights(src, tmp_path / "m.pt")
    rows = {r.parameter: r for r in report.matched}
    assert rows["fc6.weight"].shape == (256, 32, 7, 7)
    assert rows["fc6.weight"].source_shape == ((1, 1, 256, 1568) if legacy else (256, 1568))
    assert rows["fc6.weight"].source == "fc6 blob 0 (InnerProduct)"
    assert rows["upscore.weight"].source_shape == (21, 1, 64, 64)
    assert rows["upscore.weight"].shape == (21, 21, 64, 64)
    _assert_same_output(load_model(tmp_path / "m.pt")[0], layers, [(35, 50)])


def test_a_state_dict_of_another_layout_is_refused(tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64),
                "classifier.6.weight": torch.zeros(1000, 4096)}, path)
    with pytest.raises(FCNError, match=r"no model in the zoo has these layers; closest is "):
        import_weights(path, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_a_model_with_other_layer_names_plugs_in_through_its_table(tmp_path, monkeypatch):
    """How NYUD's two-stream (conv1_1color ...) or SIFT Flow's *_sem nets will plug in: a
    registered model declares source_layer_renames; the importer itself does not change."""
    from fcn_deploy.models import registry
    from fcn_deploy.models.vgg import FCN32sVGG16

    layers = reference_net("fcn32s", seed=18)
    names = [l.name for l in layers if l.blobs]

    class ColorStream(FCN32sVGG16):
        arch = "test_fcn32s_color"
        source_layer_renames = {f"{n}color": n for n in names}

    monkeypatch.setitem(registry._REGISTRY, "test_fcn32s_color", ColorStream)
    renamed = [CaffeLayer(f"{l.name}color", l.type, blobs=l.blobs, conv=l.conv)
               for l in layers if l.blobs]
    src = _write(tmp_path / "nyud-color.caffemodel", renamed)
    report = import_weights(src, tmp_path / "m.pt")
    assert report.arch == "test_fcn32s_color" and report.arch_reason == (
        "inferred from the layer names")
    assert {r.source.split(" ")[0] for r in report.matched} == {f"{n}color" for n in names}
    model = report.model
    assert isinstance(model, ColorStream)
    _assert_same_output(model, layers, [(31, 33)])


# -- pytorch-fcn state_dicts -----------------------------------------------------------------

@pytest.mark.parametrize("net", ["fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce"])
def test_pytorch_fcn_state_dicts(net, tmp_path):
    layers = reference_net(net, seed=5)
    name = {"fcn8s-atonce": "fcn8s-atonce_from_caffe.pth"}.get(net, f"{net}_from_caffe.pth")
    path = tmp_path / name
    torch.save(state_dict_of(layers), path)
    report = import_weights(path, tmp_path / "m.pt")
    assert report.arch == ARCH[net] and "pytorch-fcn" in report.source_format
    if net.startswith("fcn8s"):
        # pytorch-fcn's at-once net has FCN-8s's keys (its scales are code): the file name decides
        other = "fcn8s_vgg16" if net == "fcn8s-atonce" else "fcn8s_atonce_vgg16"
        assert other in report.arch_reason
    model, _ = load_model(tmp_path / "m.pt")
    _assert_same_output(model, layers, [(33, 47)])


def test_pytorch_fcn_legacy_serialization(tmp_path):
    """pytorch-fcn's files predate PyTorch's zip format: a bare pickle stream."""
    layers = reference_net("fcn16s", seed=19)
    path = tmp_path / "fcn16s_from_caffe.pth"
    torch.save(state_dict_of(layers), path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert import_weights(path, tmp_path / "m.pt").arch == "fcn16s_vgg16"
    _assert_same_output(load_model(tmp_path / "m.pt")[0], layers, [(29, 36)])


def test_pytorch_fcn_training_checkpoint_wrapper_and_arch_override(tmp_path):
    layers = reference_net("fcn8s-atonce", seed=6)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "model_state_dict": state_dict_of(layers)}, path)
    report = import_weights(path, tmp_path / "m.pt", arch="fcn8s_atonce_vgg16")
    assert report.arch == "fcn8s_atonce_vgg16" and report.arch_reason == "given with --arch"
    model, _ = load_model(tmp_path / "m.pt")
    _assert_same_output(model, layers, [(30, 30)])


def test_reimporting_our_own_checkpoint_is_a_no_op(tmp_path):
    src = _write(tmp_path / "a.caffemodel", reference_net("fcn32s", seed=1))
    import_weights(src, tmp_path / "m.pt")
    report = import_weights(tmp_path / "m.pt", tmp_path / "again.pt")
    assert "already an fcn-deploy checkpoint (fcn32s_vgg16, 21 classes)" in report.summary()
    assert not (tmp_path / "again.pt").exists()


# -- the report, classes, geometry ----------------------------------------------------------

def test_summary_lists_every_layer_with_shapes_and_source(tmp_path):
    src = _write(tmp_path / "fcn8s-atonce.caffemodel", reference_net("fcn8s-atonce", seed=2))
    text = import_weights(src, tmp_path / "m.pt").summary()
    assert "architecture: fcn8s_atonce_vgg16" in text
    rows = text.splitlines()
    assert rows[3] == "mean (BGR): 104.007, 116.669, 122.679 (the reference's for fcn8s_atonce_vgg16)"
    assert rows[4].split() == ["parameter", "shape", "source"]
    assert rows[5].split() == ["conv1_1.weight", "4x3x3x3", "conv1_1", "blob", "0", "(Convolution)"]
    assert rows[6].split() == ["conv1_1.bias", "4", "conv1_1", "blob", "1", "(Convolution)"]
    assert "upscore8.weight 21x21x16x16 upscore8 blob 0 (Deconvolution)" in [
        " ".join(r.split()) for r in rows]
    scale = [" ".join(r.split()) for r in rows if r.startswith("scale_pool4")]
    assert scale == ["scale_pool4 (fixed scale 0.01) - scale_pool4 blob 0 (Scale) (32,)"]
    assert rows.index(next(r for r in rows if r.startswith("scale_pool4"))) < rows.index(
        next(r for r in rows if r.startswith("score_pool4.weight")))
    assert "forward check: 1x3x32x32 -> 1x21x32x32 scores, all finite" in text
    assert ("geometry: same as fcn8s_atonce_vgg16 in the layer parameters stored in "
            "fcn8s-atonce.caffemodel") in text
    assert text.rstrip().splitlines()[-1].startswith(f"wrote {tmp_path / 'm.pt'} (39 tensors, ")


def test_classes_from_a_reference_style_file_or_builtin(tmp_path):
    src = _write(tmp_path / "ctx.caffemodel", reference_net("fcn16s", num_classes=60, seed=4))
    classes = tmp_path / "classes-59.txt"
    classes.write_text("".join(f"{i}: {n}\n" for i, n in enumerate(PASCAL_CONTEXT_59_CLASSES)))
    report = import_weights(src, tmp_path / "a.pt", classes=classes)
    assert report.classes_from == f"file {classes}"
    assert load_model(tmp_path / "a.pt")[1].class_names == list(PASCAL_CONTEXT_59_CLASSES)
    with pytest.raises(FCNError, match="built-in voc has 21 names but the model's score layer "
                                       "has 60 outputs"):
        import_weights(src, tmp_path / "b.pt", classes="voc")
    assert not (tmp_path / "b.pt").exists()


def test_prototxt_geometry_matches_or_every_difference_is_named(tmp_path):
    layers = reference_net("fcn8s", seed=7)
    src = _write(tmp_path / "fcn8s.caffemodel", layers)
    good = tmp_path / "val.prototxt"
    good.write_text(to_prototxt(layers, name="voc-fcn8s"))
    report = import_weights(src, tmp_path / "m.pt", prototxt=good)
    assert str(good) in report.geometry_checked
    text = to_prototxt(layers)
    text = text.replace("pad: 100", "pad: 99")
    text = text.replace("kernel_size: 16\n    stride: 8", "kernel_size: 16\n    stride: 4")
    text = text.replace("offset: 31", "offset: 30")
    bad = tmp_path / "bad.prototxt"
    bad.write_text(text)
    with pytest.raises(FCNError) as err:
        import_weights(src, tmp_path / "n.pt", prototxt=bad)
    msg = str(err.value)
    assert msg.startswith("geometry differs from fcn8s_vgg16: ")
    assert "conv1_1: pad 99 in bad.prototxt, 100 in fcn8s_vgg16" in msg
    assert "upscore8: stride 4 in bad.prototxt, 8 in fcn8s_vgg16" in msg
    assert "score: crop offset 30 (axis 2) in bad.prototxt, 31 (axis 2) in fcn8s_vgg16" in msg
    assert msg.count(";") == 2
    assert not (tmp_path / "n.pt").exists()


def test_prototxt_class_count_and_missing_layers(tmp_path):
    layers = reference_net("fcn16s", seed=8)
    src = _write(tmp_path / "fcn16s.caffemodel", layers)
    text = to_prototxt(layers).replace("num_output: 21", "num_output: 60")
    proto = tmp_path / "ctx.prototxt"
    proto.write_text(text)
    with pytest.raises(FCNError) as err:
        import_weights(src, tmp_path / "m.pt", prototxt=proto)
    for layer in ("score_fr", "upscore2", "score_pool4", "upscore16"):
        assert f"{layer}: num_output 60 in ctx.prototxt, 21 in fcn16s_vgg16" in str(err.value)
    short = tmp_path / "short.prototxt"
    short.write_text(to_prototxt([l for l in layers if not l.name.startswith("score_pool4")]))
    with pytest.raises(FCNError, match="short.prototxt lacks score_pool4 of fcn16s_vgg16"):
        import_weights(src, tmp_path / "m.pt", prototxt=short)


def test_geometry_stored_in_the_caffemodel_is_checked(tmp_path):
    layers = reference_net("fcn-alexnet", seed=9)
    conv2 = next(l for l in layers if l.name == "conv2")
    conv2.conv.group = 1  # the stored parameters say what the blobs' shape hides
    src = _write(tmp_path / "alex.caffemodel", layers)
    with pytest.raises(FCNError, match=r"conv2: group 1 in alex.caffemodel, 2 in fcn_alexnet"):
        import_weights(src, tmp_path / "m.pt")


# -- bad inputs: one clear error, nothing written -------------------------------------------

def test_shape_mismatch_names_the_layer_and_both_shapes(tmp_path):
    layers = reference_net("fcn16s", seed=10)
    sp4 = next(l for l in layers if l.name == "score_pool4")
    sp4.blobs[0] = sp4.blobs[0][:20]
    src = _write(tmp_path / "bad.caffemodel", layers)
    with pytest.raises(FCNError) as err:
        import_weights(src, tmp_path / "m.pt")
    assert str(err.value) == ("layer score_pool4 (Convolution): weight has shape (20, 32, 1, 1) "
                              "in bad.caffemodel, fcn16s_vgg16 (21 classes, width 0.0625) "
                              "expects (21, 32, 1, 1) for score_pool4.weight")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.caffemodel"]


def test_truncated_file_names_the_layer(tmp_path):
    layers = reference_net("fcn32s", seed=1)
    src = _write(tmp_path / "t.caffemodel", layers)
    data = src.read_bytes()
    src.write_bytes(data[:len(data) - 100])  # the last layer, upscore, loses its end
    with pytest.raises(FCNError, match=r"t.caffemodel is truncated: it ends inside layer "
                                       r"'upscore' \(the layer declares \d+ bytes, \d+ are "
                                       r"present\)"):
        import_weights(src, tmp_path / "m.pt")
    fc6 = next(i for i, l in enumerate(layers) if l.name == "fc6")
    src.write_bytes(data[:len(caffe.encode_caffemodel(layers[:fc6])) + 1000])
    with pytest.raises(FCNError, match="truncated: it ends inside layer 'fc6'"):
        import_weights(src, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b'name: "voc-fcn8s"\nlayer {\n  name: "data"\n}\n', "is a text file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(200)), "is not a Caffe .caffemodel"),
    (bytes([0x0a, 0x03]) + b"net", "holds no layer with weights"),
])
def test_not_a_caffemodel(content, message, tmp_path):
    src = tmp_path / "x.caffemodel"
    src.write_bytes(content)
    with pytest.raises(FCNError, match=message):
        import_weights(src, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_blob_values_that_do_not_fit_their_shape(tmp_path):
    classes = caffe.schema()
    layer = classes["LayerParameter"](name="conv1_1", type="Convolution")
    blob = layer.blobs.add()
    blob.shape.dim.extend([4, 3, 3, 3])
    blob.data = np.zeros(100, "<f4").tobytes()
    src = tmp_path / "x.caffemodel"
    src.write_bytes(caffe._key(100) + caffe._varint(layer.ByteSize()) + layer.SerializeToString())
    with pytest.raises(FCNError, match=r"layer 'conv1_1' blob 0 holds 100 float values but its "
                                       r"shape \(4, 3, 3, 3\) needs 108"):
        import_weights(src, tmp_path / "m.pt")


def test_unknown_layers_are_an_error_unless_allowed(tmp_path):
    layers = reference_net("fcn32s", seed=12)
    extra = CaffeLayer("aux_score", "Convolution", ["fc7"], ["aux_score"],
                       [np.zeros((5, 256, 1, 1), np.float32), np.zeros(5, np.float32)])
    src = _write(tmp_path / "x.caffemodel", layers + [extra])
    with pytest.raises(FCNError, match=r"source weights not used by fcn32s_vgg16 \(21 classes, "
                                       r"width 0.0625\): aux_score.weight \(5, 256, 1, 1\), "
                                       r"aux_score.bias \(5,\); pass --allow-unused"):
        import_weights(src, tmp_path / "m.pt")
    report = import_weights(src, tmp_path / "m.pt", allow_unused=True)
    assert report.unused == ["aux_score.weight (5, 256, 1, 1)", "aux_score.bias (5,)"]
    _assert_same_output(load_model(tmp_path / "m.pt")[0], layers, [(40, 40)])


def test_missing_layers_no_architecture_fits_and_unfilled_parameters(tmp_path):
    layers = [l for l in reference_net("fcn8s", seed=13) if l.name != "score_pool3"]
    src = _write(tmp_path / "x.caffemodel", layers)
    with pytest.raises(FCNError, match=r"no model in the zoo has these layers; closest is "
                                       r"fcn8s_vgg16, which needs score_pool3 \(absent\) and has "
                                       r"no nothing"):
        import_weights(src, tmp_path / "m.pt")
    with pytest.raises(FCNError, match=r"parameters left unfilled: score_pool3.weight, "
                                       r"score_pool3.bias; the source has no score_pool3 weights"):
        import_weights(src, tmp_path / "m.pt", arch="fcn8s_vgg16")
    assert not (tmp_path / "m.pt").exists()


def test_at_once_scale_must_hold_the_fixed_factor(tmp_path):
    layers = reference_net("fcn8s-atonce", seed=14)
    scale = next(l for l in layers if l.name == "scale_pool3")
    scale.blobs[0] = np.full_like(scale.blobs[0], 0.001)
    src = _write(tmp_path / "x.caffemodel", layers)
    with pytest.raises(FCNError, match=r"layer scale_pool3 \(Scale\) multiplies by 0.001..0.001 "
                                       r"\(shape \(16,\)\) but fcn8s_atonce_vgg16 .* multiplies "
                                       r"by the constant 0.0001"):
        import_weights(src, tmp_path / "m.pt")


def test_non_finite_weights_and_output_over_input(tmp_path):
    layers = reference_net("fcn32s", seed=15)
    layers[0].blobs[1][2] = np.nan
    src = _write(tmp_path / "x.caffemodel", layers)
    with pytest.raises(FCNError, match="conv1_1.bias holds NaN or infinite values"):
        import_weights(src, tmp_path / "m.pt")
    before = src.read_bytes()
    with pytest.raises(FCNError, match="fcn-import: checkpoint .*x.caffemodel is also the weights file"):
        import_weights(src, src)
    link = tmp_path / "link.pt"
    link.symlink_to(src)
    with pytest.raises(FCNError, match="is also the weights file"):
        import_weights(src, link)
    assert src.read_bytes() == before


# -- the schema and the wire format ----------------------------------------------------------

def test_streamed_file_equals_protobufs_own_serialization_and_reads_back(tmp_path):
    layers = reference_net("fcn16s", seed=16)
    for legacy in (False, True):
        kept = [l for l in layers if not legacy or l.type not in ("Crop",)]
        path = _write(tmp_path / "a.caffemodel", kept, legacy=legacy, name="voc")
        encoded = caffe.encode_caffemodel(kept, legacy=legacy, name="voc")
        assert path.read_bytes() == encoded
        whole = caffe.schema()["NetParameter"].FromString(encoded)
        assert len(whole.layers if legacy else whole.layer) == len(kept)
        back = caffe.read_caffemodel(path)
        for a, b in zip(kept, back.layers):
            assert (a.name, a.type, a.bottoms, a.tops) == (b.name, b.type, b.bottoms, b.tops)
            assert a.conv == b.conv and a.pool == b.pool
            assert (a.crop, a.scale_value) == ((b.crop, b.scale_value) if not legacy
                                               else (a.crop, a.scale_value))
            for x, y in zip(a.blobs, b.blobs):
                np.testing.assert_array_equal(x, y)


def test_unpacked_float_values_are_read(tmp_path):
    """Caffe packs its floats; any protobuf writer may not (wire type 5, one tag per value)."""
    values = [1.5, -2.0, 3.25]
    shape = bytes([0x08, 0x03])                                   # BlobShape.dim = 3
    blob = bytes([0x3a, len(shape)]) + shape                      # BlobProto.shape (7)
    blob += b"".join(bytes([0x2d]) + struct.pack("<f", v) for v in values)  # data (5), fixed32
    layer = bytes([0x0a, 0x01]) + b"s" + bytes([0x3a, len(blob)]) + blob      # name, blobs (7)
    path = tmp_path / "u.caffemodel"
    path.write_bytes(caffe._key(100) + caffe._varint(len(layer)) + layer)
    net = caffe.read_caffemodel(path)
    np.testing.assert_array_equal(net.layers[0].blobs[0], np.array(values, np.float32))


def test_prototxt_reader_skips_what_the_schema_does_not_declare(tmp_path):
    path = tmp_path / "deploy.prototxt"
    path.write_text('name: "x"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\n'
                    'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
                    '  param { lr_mult: 1 decay_mult: 1 }\n'
                    '  convolution_param { num_output: 96 kernel_size: 11 stride: 4 pad: 100\n'
                    '    weight_filler { type: "gaussian" std: 0.01 } engine: CAFFE } }\n'
                    'layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"\n'
                    '  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n')
    net = caffe.read_prototxt(path)
    conv, pool = net.layers
    assert conv.conv == caffe.ConvSpec(96, (11, 11), (4, 4), (100, 100), 1, True)
    assert pool.type == "Pooling" and pool.pool == caffe.PoolSpec("MAX", (3, 3), (2, 2), (0, 0))
    (tmp_path / "bad.prototxt").write_text("layer { name: ")
    with pytest.raises(FCNError, match="bad.prototxt is not a valid Caffe prototxt"):
        caffe.read_prototxt(tmp_path / "bad.prototxt")
