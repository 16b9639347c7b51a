"""The paper's other nets: SIFT Flow's two-head FCNs and the NYUDv2 RGB / HHA / RGB-D / RGB-HHA.

The oracles are the reference layer facts (FCN_FACTS.md, the reference's siftflow-* and nyud-*
nets) written out here, the crop offsets re-derived from measured receptive-field centres, the
VOC nets (themselves checked against the Caffe semantics in test_model_import.py), and the
caffe_reference forward pass for the import round trips.
"""
from __future__ import annotations

import pytest
import torch
from caffe_reference import caffe_forward, reference_net
from model_fixtures import build_meta
from test_model_analysis import _derived_offsets

from fcn_deploy.errors import FCNError
from fcn_deploy.models import create_model, import_weights, list_models, load_model
from fcn_deploy.models import caffe
from fcn_deploy.models.analysis import count_parameters
from fcn_deploy.models.caffe import CaffeLayer
from fcn_deploy.models.layers import head_scores

TINY = 1 / 16
SIFTFLOW = {"siftflow_fcn32s": "32s", "siftflow_fcn16s": "16s", "siftflow_fcn8s": "8s"}
VOC_OF = {"32s": "fcn32s_vgg16", "16s": "fcn16s_vgg16", "8s": "fcn8s_vgg16"}
MULTI = ["nyud_fcn16s_color_hha", "nyud_fcn32s_color_d", "nyud_fcn32s_color_hha",
         "siftflow_fcn16s", "siftflow_fcn32s", "siftflow_fcn8s"]
#: (kernel, stride, pad, outputs) of every head layer of the reference nets, C = the head's classes.
HEAD_FACTS = {
    "32s": {"score_fr": (1, 1, 0, "C"), "upscore": (64, 32, 0, "C")},
    "16s": {"score_fr": (1, 1, 0, "C"), "upscore2": (4, 2, 0, "C"), "score_pool4": (1, 1, 0, "C"),
            "upscore16": (32, 16, 0, "C")},
    "8s": {"score_fr": (1, 1, 0, "C"), "upscore2": (4, 2, 0, "C"), "score_pool4": (1, 1, 0, "C"),
           "upscore_pool4": (4, 2, 0, "C"), "score_pool3": (1, 1, 0, "C"),
           "upscore8": (16, 8, 0, "C")},
}
CROPS = {"32s": {"upscore": 19}, "16s": {"score_pool4": 5, "upscore16": 27},
         "8s": {"score_pool4": 5, "score_pool3": 9, "upscore8": 31}}
#: VGG16 conv1_1..fc7 with biases (FCN_FACTS: FCN-8s 134,362,751 minus its three score layers).
TRUNK_PARAMS = 134_362_751 - 21 * (4096 + 512 + 256) - 3 * 21
SIZES = [(1, 1), (17, 40), (31, 33), (64, 64), (97, 130)]


def _rand(*shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 255.0 - 120.0


def _randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in model.score_layers:
            layer = model.get_submodule(name)
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.1)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
    return model.eval()


def _call(model, inputs):
    first, *others = inputs
    with torch.inference_mode():
        return model(inputs[first], **{k: inputs[k] for k in others})


# -- the contract ---------------------------------------------------------------------------

def test_multi_nets_are_registered_and_left_out_of_the_single_list():
    assert set(MULTI) <= set(list_models())
    assert not set(MULTI) & set(list_models(multi=False))
    assert {"nyud_fcn32s_color", "nyud_fcn32s_hha", "fcn8s_vgg16"} <= set(list_models(multi=False))


@pytest.mark.parametrize("name,inputs,heads", [
    ("siftflow_fcn16s", {"image": 3}, {"sem": 33, "geo": 3}),
    ("nyud_fcn32s_color", {"image": 3}, {"score": 40}),
    ("nyud_fcn32s_hha", {"hha": 3}, {"score": 40}),
    ("nyud_fcn32s_color_d", {"image": 3, "depth": 1}, {"score": 40}),
    ("nyud_fcn32s_color_hha", {"image": 3, "hha": 3}, {"score": 40}),
    ("nyud_fcn16s_color_hha", {"image": 3, "hha": 3}, {"score": 40}),
    ("fcn8s_vgg16", {"image": 3}, {"score": 21}),
])
def test_inputs_heads_and_defaults(name, inputs, heads):
    model = build_meta(name)  # the architecture's own default class counts
    assert model.input_channels == inputs and model.head_classes == heads
    desc = model.io_description()
    if name == "fcn8s_vgg16" or name == "nyud_fcn32s_color":
        assert desc == {}  # single-input single-head metadata stays as it was
    if len(heads) > 1:
        assert [{"name": h["name"], "num_classes": h["num_classes"]} for h in desc["heads"]] \
            == [{"name": k, "num_classes": v} for k, v in heads.items()]
    if list(inputs) != ["image"]:
        assert desc["inputs"] == [{"name": k, "channels": v} for k, v in inputs.items()]


def test_siftflow_class_counts_and_rebuild_arguments():
    model = create_model("siftflow_fcn16s", num_classes=5, geo_classes=2, width=TINY)
    assert model.arch_kwargs == {"num_classes": 5, "geo_classes": 2, "width": TINY,
                                 "learn_upsampling": False}
    with pytest.raises(FCNError, match=r"num_classes must be an integer >= 1, got 0"):
        create_model("siftflow_fcn16s", geo_classes=0)
    with pytest.raises(FCNError, match=r"model 'fcn8s_vgg16' does not take geo_classes"):
        create_model("fcn8s_vgg16", geo_classes=3)


# -- geometry: the reference layer facts ----------------------------------------------------

@pytest.mark.parametrize("name", list(SIFTFLOW))
def test_siftflow_heads_have_the_reference_layers(name):
    variant = SIFTFLOW[name]
    model = build_meta(name)
    modules = dict(model.named_modules())
    for head, suffix, classes in (("sem", "_sem", 33), ("geo", "_geo", 3)):
        for layer, (k, s, p, _) in HEAD_FACTS[variant].items():
            m = modules[layer + suffix]
            assert (m.kernel_size, m.stride, m.padding) == ((k, k), (s, s), (p, p)), layer
            assert m.out_channels == classes
            assert (m.bias is None) == layer.startswith("upscore")
        assert {k: v for k, v in model.crop_offsets.items() if k.endswith(suffix)} == {
            f"{k}{suffix}": v for k, v in CROPS[variant].items()}
        # ... and the offsets follow from the measured centres of this head's maps
        assert _derived_offsets(model, suffix) == {
            f"{k}{suffix}": v for k, v in CROPS[variant].items()}
    assert "score_fr" not in modules  # no unsuffixed head
    assert modules["conv1_1"].padding == (100, 100) and modules["fc6"].kernel_size == (7, 7)


@pytest.mark.parametrize("name", list(SIFTFLOW))
def test_siftflow_parameter_counts_per_head(name):
    variant = SIFTFLOW[name]
    model = build_meta(name)
    feeds = {"score_fr": 4096, "score_pool4": 512, "score_pool3": 256}
    frozen = {"upscore": 64, "upscore2": 4, "upscore16": 32, "upscore_pool4": 4, "upscore8": 16}
    trainable, total = TRUNK_PARAMS, TRUNK_PARAMS
    for c in (33, 3):
        for layer in HEAD_FACTS[variant]:
            if layer in feeds:
                trainable += feeds[layer] * c + c
                total += feeds[layer] * c + c
            else:
                total += c * c * frozen[layer] ** 2
    assert count_parameters(model, trainable_only=True) == trainable
    assert count_parameters(model) == total
    if variant == "16s":  # the paper's net: 134,260,544 + 36 * 4,610
        assert trainable == 134_426_504


@pytest.mark.parametrize("name", MULTI + ["nyud_fcn32s_hha"])
def test_output_is_the_input_size(name):
    model = _randomize(create_model(name, num_classes=4, width=TINY))
    for h, w in SIZES:
        inputs = {k: _rand(2, c, h, w, seed=h + w) for k, c in model.input_channels.items()}
        for head, scores in head_scores(_call(model, inputs)).items():
            assert scores.shape == (2, model.head_classes[head], h, w), (head, h, w)


@pytest.mark.parametrize("name", list(SIFTFLOW))
def test_each_siftflow_head_is_the_voc_net_of_its_variant(name):
    """Trunk + one head's weights in the VOC net of the same variant give that head's scores:
    the heads share the trunk and nothing else, with the VOC nets' geometry."""
    variant = SIFTFLOW[name]
    model = _randomize(create_model(name, num_classes=5, geo_classes=3, width=TINY), seed=3)
    x = _rand(1, 3, 45, 61, seed=7)
    with torch.inference_mode():
        out = model(x)
    state = model.state_dict()
    for head, suffix in (("sem", "_sem"), ("geo", "_geo")):
        voc = create_model(VOC_OF[variant], num_classes=model.head_classes[head], width=TINY)
        voc.load_state_dict({k: state[k.replace(k.split(".")[0], k.split(".")[0] + suffix, 1)
                                      if k.split(".")[0] in voc.score_layers + voc.upsample_layers
                                      else k] for k in voc.state_dict()})
        with torch.inference_mode():
            assert torch.equal(voc.eval()(x), out[head])


def test_late_fusion_is_the_sum_of_two_fcns():
    """score_fused = score_frcolor + score_frhha before a linear upsampling: the output is the
    sum of an FCN on the image and an FCN on the HHA image (same geometry, 32s and 16s)."""
    for fused, single in (("nyud_fcn32s_color_hha", "fcn32s_vgg16"),
                          ("nyud_fcn16s_color_hha", "fcn16s_vgg16")):
        model = _randomize(create_model(fused, num_classes=6, width=TINY), seed=5)
        image, hha = _rand(1, 3, 50, 38, seed=1), _rand(1, 3, 50, 38, seed=2)
        with torch.inference_mode():
            out = model(image, hha=hha)
        parts = []
        for stream, x in (("color", image), ("hha", hha)):
            net = create_model(single, num_classes=6, width=TINY).eval()
            own = {k[len(stream) + 1:]: v for k, v in model.state_dict().items()
                   if k.startswith(stream + ".")}
            net.load_state_dict({**net.state_dict(), **own})
            with torch.inference_mode():
                parts.append(net(x))
        assert torch.allclose(out, parts[0] + parts[1], rtol=1e-4, atol=1e-3 * float(out.abs().max()))
        assert count_parameters(build_meta(fused), trainable_only=True) == 2 * (
            TRUNK_PARAMS + 40 * 4097 + (40 * 513 if "16s" in fused else 0))


def test_color_d_concatenates_depth_and_inits_it_as_the_reference():
    model = _randomize(create_model("nyud_fcn32s_color_d", num_classes=4, width=TINY), seed=2)
    assert model.conv1_1.weight.shape[1] == 4
    assert count_parameters(build_meta("nyud_fcn32s_color_d"), trainable_only=True) == (
        TRUNK_PARAMS + 64 * 9 + 40 * 4097)
    rgb = create_model("fcn32s_vgg16", num_classes=4, width=TINY)
    w, b = torch.randn(rgb.conv1_1.weight.shape), torch.randn(rgb.conv1_1.bias.shape)
    model.init_conv1_1_from_color(w, b)
    assert torch.equal(model.conv1_1.weight[:, :3], w)
    assert torch.allclose(model.conv1_1.weight[:, 3], (w[:, 0] + w[:, 1] + w[:, 2]) / 3)
    assert torch.equal(model.conv1_1.bias, b)
    with pytest.raises(ValueError, match=r"conv1_1 of an RGB net must be \(4, 3, 3, 3\)"):
        model.init_conv1_1_from_color(torch.zeros(4, 4, 3, 3), b)
    # with a zero depth channel it is the RGB net on the image
    with torch.no_grad():
        model.conv1_1.weight[:, 3] = 0
    state = {k: v for k, v in model.state_dict().items() if k != "conv1_1.weight"}
    rgb.load_state_dict({**state, "conv1_1.weight": model.conv1_1.weight[:, :3]})
    image, depth = _rand(1, 3, 40, 40, seed=3), _rand(1, 1, 40, 40, seed=4)
    with torch.inference_mode():
        assert torch.equal(model(image, depth=depth), rgb.eval()(image))


# -- fcn-import's names ---------------------------------------------------------------------

def test_source_layer_names_are_the_reference_caffemodels():
    sift = build_meta("siftflow_fcn16s").source_layer_map()
    assert {k for k in sift if not k.startswith(("conv", "fc"))} == {
        "score_fr_sem", "upscore2_sem", "score_pool4_sem", "upscore16_sem",
        "score_fr_geo", "upscore2_geo", "score_pool4_geo", "upscore16_geo"}
    fusion = build_meta("nyud_fcn32s_color_hha").source_layer_map()
    assert fusion["conv1_1color"] == "color.conv1_1" and fusion["fc7hha"] == "hha.fc7"
    assert fusion["score_frcolor"] == "color.score_fr" and fusion["upscore"] == "upscore"
    # 13 convs, fc6, fc7, score_fr per stream, and the shared upscore
    assert len(fusion) == 2 * 16 + 1
    assert not any(k.startswith(("color.", "hha.")) for k in fusion)
    d = build_meta("nyud_fcn32s_color_d").source_layer_map()
    assert d["conv1_1_bgrd"] == "conv1_1" and "conv1_1" not in d


def _renamed(layers, suffix, *, skip=()):
    return [CaffeLayer(f"{l.name}{suffix}", l.type, blobs=l.blobs, conv=l.conv)
            for l in layers if l.blobs and l.name not in skip]


def _is_head(layer):
    return layer.name.startswith(("score", "upscore"))


def test_import_siftflow_caffemodel_round_trip(tmp_path):
    sem = reference_net("fcn16s", num_classes=33, seed=11)
    geo_head = [l for l in reference_net("fcn16s", num_classes=3, seed=12) if _is_head(l)]
    trunk = [l for l in sem if l.blobs and not _is_head(l)]
    layers = trunk + _renamed([l for l in sem if _is_head(l)], "_sem") + _renamed(geo_head, "_geo")
    src = caffe.write_caffemodel(tmp_path / "siftflow-fcn16s-heavy.caffemodel", layers)
    report = import_weights(src, tmp_path / "m.pt", classes="siftflow-33")
    assert report.arch == "siftflow_fcn16s"
    assert report.arch_kwargs == {"num_classes": 33, "geo_classes": 3, "width": TINY,
                                  "learn_upsampling": False}
    model, meta = load_model(tmp_path / "m.pt")
    assert meta.class_names[0] == "awning" and meta.heads[1]["name"] == "geo"
    assert meta.heads[1]["class_names"] == ["horizontal", "vertical", "sky"]
    # the reference trained SIFT Flow on its own mean, so the runtime must subtract that one
    assert meta.mean == pytest.approx([114.578, 115.294, 108.353]) and report.mean == tuple(meta.mean)
    assert "mean (BGR): 114.578, 115.294, 108.353" in report.summary()
    x = _rand(1, 3, 41, 57, seed=9)
    with torch.inference_mode():
        out = model(x)
    geo_layers = {l.name: l for l in geo_head}
    geo_net = [geo_layers.get(l.name, l) for l in sem]  # sem's trunk, geo's head
    for head, ref in (("sem", caffe_forward(sem, x)), ("geo", caffe_forward(geo_net, x))):
        scale = float(ref.abs().max())
        assert scale > 0 and float((out[head] - ref).abs().max()) <= 2e-5 * scale


def test_import_color_hha_caffemodel_round_trip(tmp_path):
    color = reference_net("fcn32s", num_classes=40, seed=21, random_upsampling=False)
    hha = reference_net("fcn32s", num_classes=40, seed=22, random_upsampling=False)
    layers = (_renamed(color, "color", skip=("upscore",)) + _renamed(hha, "hha", skip=("upscore",))
              + [l for l in color if l.name == "upscore"])
    src = caffe.write_caffemodel(tmp_path / "nyud-fcn32s-color-hha-heavy.caffemodel", layers)
    report = import_weights(src, None)
    assert report.arch == "nyud_fcn32s_color_hha" and report.arch_kwargs["num_classes"] == 40
    image, depth = _rand(1, 3, 36, 44, seed=1), _rand(1, 3, 36, 44, seed=2)
    with torch.inference_mode():
        out = report.model(image, hha=depth)
    ref = caffe_forward(color, image) + caffe_forward(hha, depth)  # bilinear upscore is linear
    assert float((out - ref).abs().max()) <= 2e-5 * float(ref.abs().max())


def test_nyud_single_stream_nets_are_chosen_by_file_name(tmp_path):
    layers = reference_net("fcn32s", num_classes=40, seed=31)
    for file, arch, mean in (
            ("nyud-fcn32s-color-heavy.caffemodel", "nyud_fcn32s_color", (116.190, 97.203, 92.318)),
            ("nyud-fcn32s-hha-heavy.caffemodel", "nyud_fcn32s_hha", (116.190, 97.203, 92.318)),
            ("fcn32s-heavy-pascal.caffemodel", "fcn32s_vgg16",
             (104.00698793, 116.66876762, 122.67891434))):
        src = caffe.write_caffemodel(tmp_path / file, layers)
        report = import_weights(src, tmp_path / "m.pt")
        assert report.arch == arch and report.mean == pytest.approx(mean)
        assert load_model(tmp_path / "m.pt")[1].mean == pytest.approx(list(mean))


def test_imagenet_weights_fill_every_stream_and_widen_the_rgbd_conv():
    from fcn_deploy.models.classifiers import VGG16Classifier
    from fcn_deploy.models.surgery import load_imagenet_weights

    torch.manual_seed(0)
    source = VGG16Classifier(width=TINY).state_dict()
    rgbd = create_model("nyud_fcn32s_color_d", width=TINY)
    assert len(load_imagenet_weights(rgbd, source).copied) == 30  # 15 layers x (weight, bias)
    w = source["features.0.weight"]
    assert torch.equal(rgbd.conv1_1.weight[:, :3], w)
    assert torch.allclose(rgbd.conv1_1.weight[:, 3], w.mean(dim=1))
    assert torch.equal(rgbd.fc6.weight, source["classifier.0.weight"].reshape(rgbd.fc6.weight.shape))
    fusion = create_model("nyud_fcn16s_color_hha", width=TINY)
    report = load_imagenet_weights(fusion, source)
    assert len(report.copied) == 60 and {k.split(".")[0] for k in report.copied} == {"color", "hha"}
    assert torch.equal(fusion.color.conv3_2.weight, fusion.hha.conv3_2.weight)
    assert fusion.color.score_fr.weight.abs().sum() == 0  # score layers stay zero
    sift = create_model("siftflow_fcn8s", width=TINY)
    assert len(load_imagenet_weights(sift, source).copied) == 30
    assert torch.equal(sift.conv5_3.weight, source["features.28.weight"])


@pytest.mark.parametrize("coarse,fine", [("siftflow_fcn32s", "siftflow_fcn16s"),
                                         ("siftflow_fcn16s", "siftflow_fcn8s"),
                                         ("nyud_fcn32s_color_hha", "nyud_fcn16s_color_hha")])
def test_staged_init_from_the_coarser_net(coarse, fine):
    from fcn_deploy.models.surgery import init_from_coarser

    source = _randomize(create_model(coarse, num_classes=4, width=TINY), seed=8)
    model = create_model(fine, num_classes=4, width=TINY)
    report = init_from_coarser(model, source)
    new = {k.rpartition(".")[0] for k in report.initialized}
    state = source.state_dict()
    for key, value in model.state_dict().items():
        layer = key.rpartition(".")[0]
        if layer in new:
            continue
        assert torch.equal(value, state[key]), key  # trunk and the coarser net's heads copied
    scores = {n for n in new if n in model.score_layers}
    assert scores and all(model.get_submodule(n).weight.abs().sum() == 0 for n in scores)
