"""Initialisation and building blocks: bilinear kernels, frozen flags, zero scores, LRN, crops."""
import pytest
import torch
from model_fixtures import ALL_MODELS, TINY

from fcn_deploy.models import bilinear_kernel, create_model
from fcn_deploy.models.layers import crop

UPSAMPLING = {
    "fcn32s_vgg16": {"upscore": (64, 32)},
    "fcn16s_vgg16": {"upscore2": (4, 2), "upscore16": (32, 16)},
    "fcn8s_vgg16": {"upscore2": (4, 2), "upscore_pool4": (4, 2), "upscore8": (16, 8)},
    "fcn8s_atonce_vgg16": {"upscore2": (4, 2), "upscore_pool4": (4, 2), "upscore8": (16, 8)},
    "fcn_alexnet": {"upscore": (63, 32)},
    "fcn_googlenet": {"upscore": (63, 32)},
    "nyud_fcn32s_color": {"upscore": (64, 32)},
    "nyud_fcn32s_hha": {"upscore": (64, 32)},
}
INTERMEDIATE = {"upscore2", "upscore_pool4"}
SCORES = {
    "fcn32s_vgg16": {"score_fr"}, "fcn16s_vgg16": {"score_fr", "score_pool4"},
    "fcn8s_vgg16": {"score_fr", "score_pool4", "score_pool3"},
    "fcn8s_atonce_vgg16": {"score_fr", "score_pool4", "score_pool3"},
    "fcn_alexnet": {"score_fr"}, "fcn_googlenet": {"score_fr"},
    "nyud_fcn32s_color": {"score_fr"}, "nyud_fcn32s_hha": {"score_fr"},
}


def test_every_registered_model_is_described_here():
    assert set(UPSAMPLING) == set(SCORES) == set(ALL_MODELS)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 16, 32, 63, 64])
def test_bilinear_kernel_matches_the_formula(k):
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 else factor - 0.5
    w = bilinear_kernel(k, 3)
    assert w.shape == (3, 3, k, k) and w.dtype == torch.float32
    for i in range(k):
        for j in range(k):
            expected = (1 - abs(i - centre) / factor) * (1 - abs(j - centre) / factor)
            for c in range(3):
                assert w[c, c, i, j].item() == pytest.approx(expected, abs=1e-7)
    off_diagonal = w.clone()
    off_diagonal[torch.arange(3), torch.arange(3)] = 0
    assert off_diagonal.abs().sum() == 0


def test_bilinear_kernel_known_values():
    # k=4 (factor 2, centre 1.5): profile 0.25, 0.75, 0.75, 0.25
    torch.testing.assert_close(bilinear_kernel(4, 1)[0, 0, 0], torch.tensor([.0625, .1875, .1875, .0625]))
    # k=3 (factor 2, centre 1): profile 0.5, 1, 0.5
    torch.testing.assert_close(bilinear_kernel(3, 1)[0, 0, 1], torch.tensor([.5, 1.0, .5]))
    # k=63 (factor 32, centre 31): peak 1 at the centre, 1/32 at the ends
    p = bilinear_kernel(63, 1)[0, 0, 31]
    assert p[31] == 1.0 and p[0] == p[62] == pytest.approx(1 / 32)


def test_bilinear_kernel_rejects_bad_sizes():
    with pytest.raises(ValueError, match="kernel size"):
        bilinear_kernel(0, 2)
    with pytest.raises(ValueError, match="channels"):
        bilinear_kernel(4, 0)


def test_bilinear_deconvolution_interpolates_linearly():
    # stride-2 k4 upsampling of a linear ramp is a linear ramp in the interior
    up = torch.nn.ConvTranspose2d(1, 1, 4, stride=2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(4, 1))
        out = up(torch.arange(6.0).reshape(1, 1, 1, 6).expand(1, 1, 6, 6).contiguous())
    row = out[0, 0, 6, 2:-2]
    torch.testing.assert_close(row[1:] - row[:-1], torch.full((len(row) - 1,), 0.5))


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("learn", [False, True])
def test_upsampling_init_and_frozen_flags(name, learn):
    model = create_model(name, num_classes=4, width=TINY, learn_upsampling=learn)
    assert set(model.upsample_layers) == set(UPSAMPLING[name])
    for layer_name, (k, s) in UPSAMPLING[name].items():
        layer = model.get_submodule(layer_name)
        assert isinstance(layer, torch.nn.ConvTranspose2d)
        assert layer.kernel_size == (k, k) and layer.stride == (s, s) and layer.bias is None
        assert torch.equal(layer.weight, bilinear_kernel(k, 4))
        assert layer.weight.requires_grad == (learn and layer_name in INTERMEDIATE)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_score_layers_start_at_zero_and_the_rest_does_not(name):
    model = create_model(name, num_classes=21, width=TINY)
    assert set(model.score_layers) == SCORES[name]
    for layer_name in SCORES[name]:
        layer = model.get_submodule(layer_name)
        assert layer.kernel_size == (1, 1) and layer.out_channels == 21
        assert layer.weight.abs().sum() == 0 and layer.bias.abs().sum() == 0
        assert layer.weight.requires_grad
    for mod_name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and mod_name not in SCORES[name]:
            assert module.weight.std() > 0, mod_name
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 40, 40)).abs().sum() == 0  # zero scores -> zeros


def test_frozen_upsampling_gets_no_gradient():
    model = create_model("fcn16s_vgg16", width=TINY)
    model(torch.randn(1, 3, 48, 48)).sum().backward()
    assert model.upscore2.weight.grad is None and model.upscore16.weight.grad is None
    assert model.score_fr.weight.grad is not None


def caffe_lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's ACROSS_CHANNELS LRN written out: window of `size` channels centred on c."""
    out = torch.empty_like(x)
    half = (size - 1) // 2
    channels = x.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - half), min(channels, c + half + 1)
        scale = k + alpha / size * (x[:, lo:hi] ** 2).sum(dim=1)
        out[:, c] = x[:, c] / scale ** beta
    return out


def test_torch_lrn_equals_caffe_lrn():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 4, 5, dtype=torch.float64) * 60  # large enough for LRN to matter
    lrn = create_model("fcn_alexnet", width=TINY).norm1.double()
    expected = caffe_lrn(x)
    assert (expected - x).abs().max() > 1e-2
    torch.testing.assert_close(lrn(x), expected, rtol=1e-12, atol=1e-12)


def test_crop_takes_offset_and_reference_size():
    x = torch.arange(10 * 12.0).reshape(1, 1, 10, 12)
    ref = torch.zeros(1, 5, 4, 6)
    out = crop(x, ref, 3)
    assert out.shape == (1, 1, 4, 6)
    assert torch.equal(out, x[:, :, 3:7, 3:9])


def test_atonce_scales_the_skips():
    torch.manual_seed(0)
    model = create_model("fcn8s_atonce_vgg16", width=TINY).eval()
    seen = {}
    for name in ("pool3", "pool4", "score_pool3", "score_pool4"):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, n=name: seen.__setitem__(n, (i[0].clone(), o.clone())))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64) * 50)
    torch.testing.assert_close(seen["score_pool4"][0], seen["pool4"][1] * 0.01)
    torch.testing.assert_close(seen["score_pool3"][0], seen["pool3"][1] * 0.0001)
    assert model.state_dict().keys() == create_model("fcn8s_vgg16", width=TINY).state_dict().keys()
