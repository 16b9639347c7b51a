"""Registry and factory: names, validation, rebuild arguments, width scaling."""
import subprocess
import sys

import pytest
import torch
from model_fixtures import ALL_MODELS, build_meta

from fcn_deploy.errors import FCNError
from fcn_deploy.models import create_model, list_models, register_model
from fcn_deploy.models.layers import scaled_channels

EXPECTED = ["fcn16s_vgg16", "fcn32s_vgg16", "fcn8s_atonce_vgg16", "fcn8s_vgg16", "fcn_alexnet",
            "fcn_googlenet", "nyud_fcn16s_color_hha", "nyud_fcn32s_color", "nyud_fcn32s_color_d",
            "nyud_fcn32s_color_hha", "nyud_fcn32s_hha", "siftflow_fcn16s", "siftflow_fcn32s",
            "siftflow_fcn8s"]


def test_list_models_is_the_contract():
    assert list_models() == EXPECTED


def test_import_fcn_deploy_does_not_import_torch():
    code = "import sys, fcn_deploy; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_lists_valid_names():
    with pytest.raises(FCNError, match=r"unknown model 'fcn4s'; valid names: fcn16s_vgg16, "
                                       r"fcn32s_vgg16, .*fcn_googlenet"):
        create_model("fcn4s")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "21"])  # None: the net's default
def test_bad_num_classes(bad):
    with pytest.raises(FCNError, match=r"num_classes must be an integer >= 1, got"):
        create_model("fcn32s_vgg16", num_classes=bad)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_bad_width(bad):
    with pytest.raises(FCNError, match=r"width must be a finite number > 0"):
        create_model("fcn_alexnet", width=bad)


def test_bad_learn_upsampling_and_unknown_kwarg():
    with pytest.raises(FCNError, match=r"learn_upsampling must be True or False"):
        create_model("fcn8s_vgg16", learn_upsampling="yes")
    with pytest.raises(FCNError, match=r"model 'fcn8s_vgg16' does not take dilation; accepted "
                                       r"arguments: num_classes, width, learn_upsampling"):
        create_model("fcn8s_vgg16", dilation=2)


def test_register_model_rejects_a_second_builder_under_the_same_name():
    with pytest.raises(ValueError, match="already registered"):
        register_model("fcn32s_vgg16")(lambda **kw: None)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_arch_and_rebuild_arguments(name):
    model = build_meta(name, num_classes=5, width=0.5, learn_upsampling=True)
    assert model.arch == name
    assert model.num_classes == 5
    assert model.arch_kwargs == {"num_classes": 5, "width": 0.5, "learn_upsampling": True}
    rebuilt = build_meta(model.arch, **model.arch_kwargs)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


def test_width_scales_every_channel_count():
    vgg = build_meta("fcn8s_vgg16", width=0.25)
    assert vgg.conv1_1.out_channels == 16 and vgg.conv5_3.out_channels == 128
    assert vgg.fc6.out_channels == vgg.fc7.out_channels == 1024
    assert vgg.score_pool3.in_channels == 64 and vgg.score_pool4.in_channels == 128
    goog = build_meta("fcn_googlenet", width=0.5)
    inc = goog.get_submodule("inception_3a")
    assert [inc.get_submodule(n).out_channels for n in
            ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")] == [32, 48, 64, 8, 16, 16]
    assert goog.score_fr.in_channels == 512  # (384 + 384 + 128 + 128) / 2
    tiny = build_meta("fcn_googlenet", width=1 / 64)
    assert tiny.get_submodule("inception_3a.5x5_reduce").out_channels == 1  # never below 1


@pytest.mark.parametrize("width", [0.3, 1 / 16, 0.01, 1 / 3])
def test_alexnet_groups_stay_valid(width):
    model = create_model("fcn_alexnet", width=width)
    for name in ("conv2", "conv4", "conv5"):
        conv = model.get_submodule(name)
        assert conv.groups == 2 and conv.in_channels % 2 == 0 and conv.out_channels % 2 == 0
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 40, 40)).shape == (1, 21, 40, 40)


def test_scaled_channels_rounding():
    assert scaled_channels(64, 1 / 16) == 4
    assert scaled_channels(96, 0.3) == 29  # 28.8 -> 29
    assert scaled_channels(96, 0.3, multiple=2) == 28  # 14.4 pairs -> 14
    assert scaled_channels(16, 0.01) == 1
    assert scaled_channels(16, 0.01, multiple=2) == 2
