"""Table 1 figures computed from the models: parameters, conv layers, MACs, receptive field,
stride, and the crop offsets re-derived from the measured geometry."""
from collections import OrderedDict

import pytest
import torch
from model_fixtures import ALL_MODELS, TINY, build_meta

from fcn_deploy.errors import FCNError
from fcn_deploy.models import create_model
from fcn_deploy.models.analysis import (count_macs, count_parameter_layers, count_parameters,
                                        crop_offset, model_summary, receptive_field,
                                        score_geometry, upsampled_geometry)
from fcn_deploy.models.classifiers import AlexNetClassifier, VGG16Classifier, convolutionalize


def test_fcn8s_vgg16_parameter_count_is_exact():
    model = build_meta("fcn8s_vgg16")
    assert count_parameters(model) == 134_489_759
    assert count_parameters(model, trainable_only=True) == 134_362_751
    # the difference is the three frozen bilinear kernels: 21*21*(4*4 + 4*4 + 16*16)
    assert 134_489_759 - 134_362_751 == 21 * 21 * (16 + 16 + 256)


def test_parameter_counts_of_the_three_backbones():
    # Table 1: 57M, 134M, 6M (trainable; the frozen upsampling kernel is not a learned parameter)
    assert count_parameters(build_meta("fcn_alexnet"), trainable_only=True) == 56_954_261
    assert count_parameters(build_meta("fcn32s_vgg16"), trainable_only=True) == 134_346_581
    assert count_parameters(build_meta("fcn_googlenet"), trainable_only=True) == 5_995_077
    # GoogLeNet without its 1000-way classifier (6,998,552 - 1024*1000 - 1000) + score_fr 1024*21+21
    assert 6_998_552 - 1_025_000 + 1024 * 21 + 21 == 5_995_077
    assert count_parameters(build_meta("fcn_googlenet")) == 5_995_077 + 21 * 21 * 63 * 63


def test_classifier_parameter_counts():
    with torch.device("meta"):
        assert count_parameters(VGG16Classifier()) == 138_357_544  # torchvision's vgg16
        assert count_parameters(AlexNetClassifier()) == 60_965_224  # CaffeNet


@pytest.mark.parametrize("name,layers", [
    ("fcn32s_vgg16", 16), ("fcn16s_vgg16", 16), ("fcn8s_vgg16", 16), ("fcn8s_atonce_vgg16", 16),
    ("fcn_alexnet", 8), ("fcn_googlenet", 22)])
def test_conv_layers_as_in_table_1(name, layers):
    assert count_parameter_layers(build_meta(name)) == layers


def test_conv_layer_rule_is_the_longest_chain():
    with torch.device("meta"):
        assert count_parameter_layers(VGG16Classifier()) == 16
        assert count_parameter_layers(AlexNetClassifier()) == 8
    # all conv modules would be 58 for GoogLeNet: the chain rule is what gives 22
    convs = [m for m in build_meta("fcn_googlenet").modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 58
    two_paths = torch.nn.Sequential(OrderedDict(a=torch.nn.Conv2d(3, 3, 1), b=torch.nn.Linear(4, 4)))
    assert count_parameter_layers(two_paths, (1, 3, 4, 4)) == 2


def test_macs_at_500():
    macs = {name: count_macs(build_meta(name), (1, 3, 500, 500)) for name in ALL_MODELS}
    assert macs["fcn8s_vgg16"] == macs["fcn8s_atonce_vgg16"]
    assert macs["fcn8s_vgg16"] / 1e9 == pytest.approx(181.5, abs=0.05)
    assert macs["fcn_alexnet"] / 1e9 == pytest.approx(21.4, abs=0.05)
    assert macs["fcn32s_vgg16"] < macs["fcn16s_vgg16"] < macs["fcn8s_vgg16"]
    # hand check of one layer: fc6 sees 22x22x512 and gives 16x16x4096 with 7x7 kernels
    by_layer = count_macs(build_meta("fcn8s_vgg16"), (1, 3, 500, 500), by_layer=True)
    assert by_layer["fc6"] == 16 * 16 * 4096 * 512 * 7 * 7
    assert by_layer["conv1_1"] == 698 * 698 * 64 * 3 * 3 * 3
    assert by_layer["upscore8"] == 70 * 70 * 21 * 21 * 16 * 16  # transposed: per input element
    assert by_layer["upscore2"] == 16 * 16 * 21 * 21 * 4 * 4
    # batch scales linearly
    assert count_macs(build_meta("fcn_alexnet"), (2, 3, 500, 500)) == 2 * macs["fcn_alexnet"]


def test_classifier_macs_and_the_10x10_grid():
    with torch.device("meta"):
        alex = AlexNetClassifier()
    assert count_macs(alex, (1, 3, 227, 227)) / 1e9 == pytest.approx(0.72, abs=0.005)
    conv = convolutionalize(alex)
    with torch.no_grad():
        assert conv(torch.empty(1, 3, 500, 500, device="meta")).shape == (1, 1000, 10, 10)


def test_count_macs_rejects_bad_shapes():
    with pytest.raises(FCNError, match=r"input_shape must be 4 positive integers"):
        count_macs(build_meta("fcn_alexnet"), (3, 500, 500))


@pytest.mark.parametrize("name,rf", [("fcn_alexnet", 355), ("fcn32s_vgg16", 404),
                                     ("fcn8s_vgg16", 404), ("fcn_googlenet", 715)])
def test_receptive_field_and_stride(name, rf):
    assert receptive_field(build_meta(name)) == (rf, 32)


def test_googlenet_907_includes_the_discarded_average_pool():
    """Table 1's 907 is GoogLeNet's classifier RF: our 715 plus the dropped 7x7/1 average pool."""
    fcn = create_model("fcn_googlenet", width=TINY)
    names = ["conv1", "pool1", "conv2", "pool2", "inception_3a", "inception_3b", "pool3",
             "inception_4a", "inception_4b", "inception_4c", "inception_4d", "inception_4e",
             "pool4", "inception_5a", "inception_5b"]
    layers = OrderedDict((n, fcn.get_submodule(n)) for n in names)
    layers["pool5"] = torch.nn.AvgPool2d(7, stride=1)
    layers["score_fr"] = fcn.score_fr
    assert receptive_field(torch.nn.Sequential(layers)) == (715 + 6 * 32, 32) == (907, 32)


def test_receptive_field_of_a_skip_layer_and_unknown_layer():
    model = build_meta("fcn8s_vgg16")
    assert score_geometry(model, layer="score_pool4") == score_geometry(model, layer="pool4")
    g = score_geometry(model, layer="score_pool3")
    assert (g.rf, g.stride) == (44, 8)  # 7 convs + 3 pools
    with pytest.raises(FCNError, match=r"no layer 'score_pool5'"):
        score_geometry(model, layer="score_pool5")


def _derived_offsets(model, suffix=""):
    """Crop offsets that align every map, from the measured score-map centres only (a net with
    several heads: the head whose layers end with ``suffix``)."""
    fr = score_geometry(model, layer=f"score_fr{suffix}")
    offsets = {}
    if f"upscore{suffix}" in model.crop_offsets:
        k = model.get_submodule(f"upscore{suffix}").kernel_size[0]
        up = upsampled_geometry(fr.center0, fr.stride, kernel=k, stride=32)
        offsets[f"upscore{suffix}"] = crop_offset(up[0], 0.0, up[1])
        return offsets
    p4 = score_geometry(model, layer=f"score_pool4{suffix}")
    up2 = upsampled_geometry(fr.center0, fr.stride, kernel=4, stride=2)
    offsets[f"score_pool4{suffix}"] = crop_offset(p4.center0, up2[0], p4.stride)
    if f"upscore16{suffix}" in model.crop_offsets:
        up16 = upsampled_geometry(*up2, kernel=32, stride=16)
        offsets[f"upscore16{suffix}"] = crop_offset(up16[0], 0.0, up16[1])
        return offsets
    p3 = score_geometry(model, layer=f"score_pool3{suffix}")
    up4 = upsampled_geometry(*up2, kernel=4, stride=2)
    offsets[f"score_pool3{suffix}"] = crop_offset(p3.center0, up4[0], p3.stride)
    up8 = upsampled_geometry(*up4, kernel=16, stride=8)
    offsets[f"upscore8{suffix}"] = crop_offset(up8[0], 0.0, up8[1])
    return offsets


@pytest.mark.parametrize("name", ALL_MODELS)
def test_crop_offsets_follow_from_the_geometry(name):
    model = build_meta(name)
    assert _derived_offsets(model) == model.crop_offsets


def test_reference_offsets_are_the_papers():
    assert build_meta("fcn32s_vgg16").crop_offsets == {"upscore": 19}
    assert build_meta("fcn16s_vgg16").crop_offsets == {"score_pool4": 5, "upscore16": 27}
    assert build_meta("fcn8s_vgg16").crop_offsets == {"score_pool4": 5, "score_pool3": 9,
                                                      "upscore8": 31}
    assert build_meta("fcn_alexnet").crop_offsets == {"upscore": 18}
    g = score_geometry(build_meta("fcn_googlenet"))
    assert g.center0 == -1.0  # 33 - conv1 pad 34: unit 0 is centred just left of the image
    # an even k64 head would need a half-pixel crop: no integer offset aligns it
    up = upsampled_geometry(g.center0, g.stride, kernel=64, stride=32)
    assert crop_offset(up[0], 0.0, up[1]) == 32.5


def test_model_summary_of_fcn_alexnet():
    s = model_summary("fcn_alexnet")
    assert s == {"arch": "fcn_alexnet", "parameters": 56_954_261 + 21 * 21 * 63 * 63,
                 "trainable_parameters": 56_954_261, "conv_layers": 8,
                 "gmacs": pytest.approx(21.42, abs=0.01), "receptive_field": 355, "max_stride": 32}


# -- tiling geometry ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fcn32s_vgg16", "fcn_alexnet", "fcn_googlenet"])
def test_tile_context_follows_from_score_geometry_and_the_deconvolution(name):
    """One upsampling (ConvTranspose k, stride 32, crop c) makes the output context arithmetic:
    output pixel p is deconvolution index u = p + c, fed by score units y with
    0 <= u - 32y <= k - 1, each seeing [centre0 + 32y -+ (rf - 1) / 2]. The directly measured
    context of a stride cell must agree with that."""
    from fcn_deploy.models.analysis import tile_geometry

    model = create_model(name, width=1 / 64)
    g = score_geometry(model)
    k = model.upscore.kernel_size[0]
    c = model.crop_offsets["upscore"]
    first, last = 32 * 10, 32 * 10 + 31
    y_min = -((-(first + c - (k - 1))) // 32)
    y_max = (last + c) // 32
    lo = g.center0 + 32 * y_min - (g.rf - 1) / 2
    hi = g.center0 + 32 * y_max + (g.rf - 1) / 2
    measured = tile_geometry(model)
    assert measured.stride == g.stride == 32
    assert (measured.context_before, measured.context_after) == (first - lo, hi - last)


def test_tile_geometry_of_every_registered_net():
    """Every net has one; the published ones (docs/runtime.md's table) keep their values."""
    from fcn_deploy.models import list_models
    from fcn_deploy.models.analysis import tile_geometry_of_arch

    got = {name: tile_geometry_of_arch(name).to_dict()
           for name in list_models()}
    assert all(g["stride"] == 32 and g["context_before"] > 0 and g["context_after"] > 0
               for g in got.values())
    vgg = {"stride": 32, "context_before": 221, "context_after": 215}
    published = {"fcn16s_vgg16": vgg, "fcn32s_vgg16": vgg, "fcn8s_atonce_vgg16": vgg,
                 "fcn8s_vgg16": vgg,
                 "fcn_alexnet": {"stride": 32, "context_before": 196, "context_after": 191},
                 "fcn_googlenet": {"stride": 32, "context_before": 358, "context_after": 357}}
    assert {name: got[name] for name in published} == published
    with pytest.raises(FCNError, match="'nope' is not registered"):
        tile_geometry_of_arch("nope")


def test_model_summary_counts_every_input_and_stream_of_the_nyud_nets():
    color = model_summary("nyud_fcn32s_color", num_classes=40)
    rgbd = model_summary("nyud_fcn32s_color_d", num_classes=40)
    # conv1_1 takes a 4th (depth) channel: 64 x 3 x 3 more weights, run at 698 x 698 (pad 100)
    assert rgbd["parameters"] == color["parameters"] + 64 * 3 * 3
    assert rgbd["gmacs"] * 1e9 == pytest.approx(color["gmacs"] * 1e9 + 64 * 9 * 698 * 698)
    fused = model_summary("nyud_fcn32s_color_hha", num_classes=40)
    upscore = 40 * 40 * 64 * 64  # one k64 upsampling after the sum, shared by both streams
    assert fused["parameters"] == 2 * (color["parameters"] - upscore) + upscore
    assert (fused["receptive_field"], fused["max_stride"]) == (404, 32)
    sift = model_summary("siftflow_fcn16s", num_classes=33)
    assert (sift["receptive_field"], sift["max_stride"], sift["conv_layers"]) == (404, 32, 16)
