"""Geometry: the output is the input's size for every size, and the 500x500 worked example."""
import pytest
import torch
from model_fixtures import ALL_MODELS, build_meta

SIZES = [1, 17, 31, 32, 33, 64, 97]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_output_size_equals_input_size(tiny_models, name):
    model = tiny_models[name]
    with torch.no_grad():
        for h, w in [(s, s) for s in SIZES] + [(17, 64), (97, 1), (33, 50)]:
            out = model(torch.randn(2, 3, h, w))
            assert out.shape == (2, model.num_classes, h, w), (h, w)
            assert out.dtype == torch.float32


@pytest.mark.parametrize("name", ALL_MODELS)
def test_output_size_sweep_on_meta(name):
    """Shape arithmetic only (meta device): every size class up to 700 px, non-square."""
    model = build_meta(name, num_classes=3)
    with torch.no_grad():
        for h in list(range(1, 130)) + list(range(130, 700, 29)):
            w = (h * 7) % 600 + 1
            assert model(torch.empty(1, 3, h, w, device="meta")).shape == (1, 3, h, w), (h, w)


def _sizes_at_500(model, names):
    sizes = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[2:]))) for n in names]
    with torch.no_grad():
        out = model(torch.empty(1, 3, 500, 500, device="meta"))
    for h in handles:
        h.remove()
    assert out.shape[2:] == (500, 500)
    return {n: s[0] for n, s in sizes.items() if s[0] == s[1]}


def test_fcn32s_worked_example_500():
    names = ["conv1_1", "pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7", "score_fr",
             "upscore"]
    got = _sizes_at_500(build_meta("fcn32s_vgg16"), names)
    assert got == {"conv1_1": 698, "pool1": 349, "pool2": 175, "pool3": 88, "pool4": 44,
                   "pool5": 22, "fc6": 16, "fc7": 16, "score_fr": 16, "upscore": 544}
    assert 544 == (16 - 1) * 32 + 64 >= 19 + 500


@pytest.mark.parametrize("name", ["fcn8s_vgg16", "fcn8s_atonce_vgg16"])
def test_fcn8s_worked_example_500(name):
    names = ["pool3", "pool4", "score_fr", "upscore2", "score_pool4", "upscore_pool4",
             "score_pool3", "upscore8"]
    got = _sizes_at_500(build_meta(name), names)
    assert got == {"pool3": 88, "pool4": 44, "score_fr": 16, "upscore2": 34, "score_pool4": 44,
                   "upscore_pool4": 70, "score_pool3": 88, "upscore8": 568}
    # each crop fits: 5 + 34 <= 44, 9 + 70 <= 88, 31 + 500 <= 568
    assert 5 + 34 <= 44 and 9 + 70 <= 88 and 31 + 500 <= 568


def test_fcn16s_and_alexnet_and_googlenet_sizes_500():
    got = _sizes_at_500(build_meta("fcn16s_vgg16"), ["upscore2", "score_pool4", "upscore16"])
    assert got == {"upscore2": 34, "score_pool4": 44, "upscore16": 560}  # 33*16+32 >= 27+500
    got = _sizes_at_500(build_meta("fcn_alexnet"),
                        ["conv1", "pool1", "pool2", "pool5", "fc6", "upscore"])
    assert got == {"conv1": 173, "pool1": 86, "pool2": 43, "pool5": 21, "fc6": 16, "upscore": 543}
    got = _sizes_at_500(build_meta("fcn_googlenet"),
                        ["conv1", "pool1", "pool2", "pool3", "pool4", "score_fr", "upscore"])
    # conv1 (500 + 2*34 - 7)//2 + 1 = 281, then ceil-mode 3x3/2 pools
    assert got == {"conv1": 281, "pool1": 140, "pool2": 70, "pool3": 35, "pool4": 17,
                   "score_fr": 17, "upscore": 575}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_batch_items_are_independent(tiny_models, name):
    model = tiny_models[name]
    x = torch.randn(3, 3, 40, 45)
    with torch.no_grad():
        batch = model(x)
        single = model(x[1:2])
    scale = single.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(batch[1:2], single, rtol=1e-4, atol=1e-5 * scale)
