"""Classifiers, convolutionalization and net surgery (ImageNet init, staged init, new classes)."""
import pytest
import torch
from model_fixtures import TINY, randomize_scores

from fcn_deploy.errors import FCNError
from fcn_deploy.models import bilinear_kernel, create_model, save_checkpoint
from fcn_deploy.meta import ModelMeta
from fcn_deploy.models.classifiers import AlexNetClassifier, VGG16Classifier, convolutionalize
from fcn_deploy.models.surgery import init_from_coarser, load_imagenet_weights, load_pretrained


def _randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return module


# -- classifiers ----------------------------------------------------------------------------

def test_vgg16_classifier_has_torchvision_keys():
    keys = list(VGG16Classifier(width=TINY).state_dict())
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert keys == [f"features.{i}.{p}" for i in convs for p in ("weight", "bias")] + \
        [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]


def test_alexnet_classifier_is_caffenet():
    with torch.device("meta"):
        net = AlexNetClassifier()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if k.endswith("weight")}
    assert shapes == {"features.0.weight": (96, 3, 11, 11), "features.4.weight": (256, 48, 5, 5),
                      "features.8.weight": (384, 256, 3, 3), "features.10.weight": (384, 192, 3, 3),
                      "features.12.weight": (256, 192, 3, 3),
                      "classifier.1.weight": (4096, 9216), "classifier.4.weight": (4096, 4096),
                      "classifier.6.weight": (1000, 4096)}
    assert isinstance(net.features[3], torch.nn.LocalResponseNorm)
    assert isinstance(net.features[7], torch.nn.LocalResponseNorm)


@pytest.mark.parametrize("cls", [VGG16Classifier, AlexNetClassifier])
def test_convolutionalized_classifier_equals_the_classifier(cls):
    net = _randomize(cls(width=TINY)).eval()
    conv = convolutionalize(net).eval()
    x = torch.randn(2, 3, net.input_size, net.input_size) * 50
    with torch.no_grad():
        logits = net(x)
        grid = conv(x)
    assert grid.shape == (2, 1000, 1, 1)
    # same arithmetic in another order (linear vs k x k conv): float32 rounding only
    scale = logits.abs().max().item()
    assert scale > 1e-3
    torch.testing.assert_close(grid[:, :, 0, 0], logits, rtol=1e-4, atol=1e-5 * scale)
    first = conv.classifier[0 if cls is VGG16Classifier else 1]
    k = 7 if cls is VGG16Classifier else 6
    assert first.kernel_size == (k, k) and first.padding == (0, 0)
    with torch.no_grad():
        assert conv(torch.randn(1, 3, 500, 500)).shape[2:] == (10, 10)


def test_classifier_refuses_other_sizes_and_convolutionalize_other_models():
    net = AlexNetClassifier(width=TINY)
    with pytest.raises(FCNError, match=r"AlexNetClassifier takes 227x227 inputs .* got 300x300"):
        net(torch.zeros(1, 3, 300, 300))
    with pytest.raises(FCNError, match=r"convolutionalize takes a VGG16Classifier or "
                                       r"AlexNetClassifier, got FCNAlexNet"):
        convolutionalize(create_model("fcn_alexnet", width=TINY))


# -- ImageNet weights into an FCN ------------------------------------------------------------

def test_vgg16_weights_file_into_fcn(tmp_path):
    cls = _randomize(VGG16Classifier(width=TINY), seed=1)
    path = tmp_path / "vgg16.pth"
    torch.save(cls.state_dict(), path)
    fcn = create_model("fcn8s_vgg16", width=TINY)
    report = load_imagenet_weights(fcn, path)
    sd = cls.state_dict()
    assert torch.equal(fcn.conv1_1.weight, sd["features.0.weight"])
    assert torch.equal(fcn.conv5_3.bias, sd["features.28.bias"])
    assert fcn.fc6.weight.shape == (256, 32, 7, 7)
    assert torch.equal(fcn.fc6.weight, sd["classifier.0.weight"].reshape(256, 32, 7, 7))
    assert torch.equal(fcn.fc7.weight[:, :, 0, 0], sd["classifier.3.weight"])
    assert torch.equal(fcn.fc7.bias, sd["classifier.3.bias"])
    assert report.ignored == ["classifier.6.weight", "classifier.6.bias"]  # fc8 dropped
    assert len(report.copied) == 2 * 15
    for name in fcn.score_layers:
        assert fcn.get_submodule(name).weight.abs().sum() == 0
    assert torch.equal(fcn.upscore8.weight, bilinear_kernel(16, 21))


def test_fcn_fc7_equals_convolutionalized_classifier():
    """With ImageNet weights, FCN-AlexNet's fc7 map is the convolutionalized net's fc7 map on
    the same (padded) input: the surgery keeps the classifier's function."""
    cls = _randomize(AlexNetClassifier(width=TINY), seed=2).eval()
    fcn = create_model("fcn_alexnet", width=TINY).eval()
    load_imagenet_weights(fcn, cls.state_dict())
    conv = convolutionalize(cls).eval()
    x = torch.randn(1, 3, 60, 70) * 50
    got = {}
    fcn.relu7.register_forward_hook(lambda m, i, o: got.__setitem__("fcn", o.clone()))
    with torch.no_grad():
        fcn(x)
        ref = conv.classifier[:6](conv.features(torch.nn.functional.pad(x, (100,) * 4)))
    torch.testing.assert_close(got["fcn"], ref, rtol=1e-4, atol=1e-6)


def test_torchvision_alexnet_is_refused_with_the_shapes():
    sd = AlexNetClassifier(width=TINY).state_dict()
    sd["features.0.weight"] = torch.zeros(4, 3, 11, 11)  # torchvision's 64 -> 4 at width 1/16
    fcn = create_model("fcn_alexnet", width=TINY)
    with pytest.raises(FCNError, match=r"features\.0\.weight has shape \(4, 3, 11, 11\), expected "
                                       r"\(6, 3, 11, 11\) for fcn_alexnet .*CaffeNet"):
        load_imagenet_weights(fcn, sd)


def test_imagenet_weights_errors(tmp_path):
    fcn = create_model("fcn32s_vgg16", width=TINY)
    sd = VGG16Classifier(width=TINY).state_dict()
    del sd["features.2.bias"]
    with pytest.raises(FCNError, match=r"missing features\.2\.bias; expected a torchvision VGG16"):
        load_imagenet_weights(fcn, sd)
    sd = VGG16Classifier(width=TINY).state_dict()
    sd["features.1.weight"] = torch.zeros(3)  # a BN-style key (vgg16_bn layout)
    with pytest.raises(FCNError, match=r"unexpected keys features\.1\.weight"):
        load_imagenet_weights(fcn, sd)
    with pytest.raises(FCNError, match=r"features\.0\.weight has shape \(64, 3, 3, 3\), "
                                       r"expected \(4, 3, 3, 3\) for fcn32s_vgg16 at width 0\.0625"):
        with torch.device("meta"):
            full = VGG16Classifier().state_dict()
        load_imagenet_weights(fcn, full)
    with pytest.raises(FCNError, match=r"weights file .*nope\.pth does not exist"):
        load_imagenet_weights(fcn, tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(FCNError, match=r"junk\.pth is not a readable PyTorch weights file"):
        load_imagenet_weights(fcn, junk)
    with pytest.raises(FCNError, match=r"no ImageNet weight layout for 'fcn_googlenet'"):
        load_imagenet_weights(create_model("fcn_googlenet", width=TINY), {})


# -- staged init and new class counts --------------------------------------------------------

def test_fcn16s_from_fcn32s_checkpoint(tmp_path):
    src = randomize_scores(_randomize(create_model("fcn32s_vgg16", width=TINY), seed=3))
    path = tmp_path / "model.pt"
    save_checkpoint(path, model=src, meta=ModelMeta.default("fcn32s_vgg16"))
    dst = create_model("fcn16s_vgg16", width=TINY)
    report = init_from_coarser(dst, path)
    for key, value in src.state_dict().items():
        if key != "upscore.weight":
            assert torch.equal(dst.state_dict()[key], value), key
    assert dst.score_pool4.weight.abs().sum() == 0 and dst.score_pool4.bias.abs().sum() == 0
    assert torch.equal(dst.upscore2.weight, bilinear_kernel(4, 21))
    assert torch.equal(dst.upscore16.weight, bilinear_kernel(32, 21))
    assert report.initialized == ["score_pool4.bias", "score_pool4.weight", "upscore16.weight",
                                  "upscore2.weight"]
    assert report.ignored == ["upscore.weight"]


def test_fcn8s_from_fcn16s_keeps_the_pool4_skip():
    src = randomize_scores(create_model("fcn16s_vgg16", width=TINY, learn_upsampling=True))
    with torch.no_grad():
        src.upscore2.weight.add_(0.5)  # a learned intermediate upsampling is carried over
    dst = create_model("fcn8s_vgg16", width=TINY)
    init_from_coarser(dst, src)
    assert torch.equal(dst.score_pool4.weight, src.score_pool4.weight)
    assert torch.equal(dst.score_fr.bias, src.score_fr.bias)
    assert torch.equal(dst.upscore2.weight, src.upscore2.weight)
    assert dst.score_pool3.weight.abs().sum() == 0
    assert torch.equal(dst.upscore_pool4.weight, bilinear_kernel(4, 21))
    assert not dst.upscore2.weight.requires_grad  # dst's own flags stay


def test_init_from_coarser_errors():
    dst = create_model("fcn16s_vgg16", width=TINY)
    with pytest.raises(FCNError, match=r"init_from_coarser: the source lacks conv1_1\.weight, "
                                       r"conv1_1\.bias.* it is not a model with the same backbone"):
        init_from_coarser(dst, create_model("fcn_alexnet", width=TINY))
    with pytest.raises(FCNError, match=r"conv1_1\.weight has shape \(8, 3, 3, 3\) in the source, "
                                       r"fcn16s_vgg16 \(width 0\.0625, 21 classes\) expects "
                                       r"\(4, 3, 3, 3\)"):
        init_from_coarser(dst, create_model("fcn32s_vgg16", width=1 / 8))
    with pytest.raises(FCNError, match=r"score_fr\.weight has shape \(5, 256, 1, 1\) .*expects "
                                       r"\(21, 256, 1, 1\).*reset_classifier=True"):
        init_from_coarser(dst, create_model("fcn32s_vgg16", width=TINY, num_classes=5))
    with pytest.raises(FCNError, match=r"takes an FCN built by create_model, got Linear"):
        init_from_coarser(torch.nn.Linear(2, 2), dst)


def test_load_pretrained_with_a_new_number_of_classes():
    src = randomize_scores(_randomize(create_model("fcn8s_vgg16", width=TINY), seed=4))
    dst = create_model("fcn8s_vgg16", width=TINY, num_classes=5)
    report = load_pretrained(dst, src.state_dict())
    assert torch.equal(dst.fc7.weight, src.fc7.weight)
    assert torch.equal(dst.conv3_3.bias, src.conv3_3.bias)
    for name in dst.score_layers:
        assert dst.get_submodule(name).weight.shape[0] == 5
        assert dst.get_submodule(name).weight.abs().sum() == 0
    assert torch.equal(dst.upscore8.weight, bilinear_kernel(16, 5))
    assert "score_fr.weight" in report.ignored and "score_fr.weight" in report.initialized


def test_load_pretrained_without_reset():
    src = randomize_scores(_randomize(create_model("fcn_googlenet", width=TINY), seed=5)).eval()
    dst = create_model("fcn_googlenet", width=TINY).eval()
    load_pretrained(dst, src, reset_classifier=False)
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(dst(x), src(x))
    other = create_model("fcn_googlenet", width=TINY, num_classes=3)
    with pytest.raises(FCNError, match=r"load_pretrained: score_fr\.weight has shape "
                                       r"\(21, 64, 1, 1\) in the source, .*expects \(3, 64, 1, 1\)"):
        load_pretrained(other, src, reset_classifier=False)
    with pytest.raises(FCNError, match=r"state_dict entries must be tensors; not: a"):
        load_pretrained(dst, {"a": 1})
