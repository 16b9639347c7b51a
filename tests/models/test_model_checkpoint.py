"""model.pt: weights_only round trip, training state, RNG state, and every failure path."""
import random

import numpy as np
import pytest
import torch
from model_fixtures import TINY, randomize_scores

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta
from fcn_deploy.models import (capture_rng_state, create_model, load_checkpoint, load_model,
                               restore_rng_state, save_checkpoint)
from fcn_deploy.models.checkpoint import FORMAT


def _model(name="fcn8s_vgg16", **kw):
    torch.manual_seed(0)
    return randomize_scores(create_model(name, width=TINY, **kw))


def test_round_trip_weights_only_and_identical_outputs(tmp_path):
    model = _model(learn_upsampling=True, num_classes=4)
    meta = ModelMeta.default("fcn8s_vgg16", 4, class_names=["bg", "a", "b", "c"])
    path = save_checkpoint(tmp_path / "model.pt", model=model, meta=meta,
                           metrics={"mean_iu": 0.5, "per_class_iu": [0.1, float("nan")]})
    raw = torch.load(path, weights_only=True)  # the contract: plain types and tensors only
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    assert raw["arch"] == "fcn8s_vgg16"
    assert raw["arch_kwargs"] == {"num_classes": 4, "width": TINY, "learn_upsampling": True}
    assert raw["meta"]["arch_kwargs"] == raw["arch_kwargs"]
    assert raw["metrics"]["mean_iu"] == 0.5 and raw["training_state"] is None

    loaded, meta2 = load_model(path)
    assert not loaded.training and loaded.arch == "fcn8s_vgg16"
    assert meta2.class_names == ["bg", "a", "b", "c"] and meta2.num_classes == 4
    assert loaded.upscore2.weight.requires_grad and not loaded.upscore8.weight.requires_grad
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    ckpt = load_checkpoint(path)
    assert set(ckpt["state_dict"]) == set(model.state_dict())


def test_training_state_with_optimizer_and_rng(tmp_path):
    model = _model("fcn32s_vgg16")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    model(torch.randn(1, 3, 32, 32)).sum().backward()
    opt.step()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    rng = capture_rng_state()
    state = {"iteration": 7, "optimizer": opt.state_dict(), "rng": rng,
             "numpy_array": np.arange(4, dtype=np.int32), "numpy_scalar": np.float32(1.5),
             "generator": np.random.default_rng(5).bit_generator.state}
    save_checkpoint(tmp_path / "m.pt", model=model, meta=ModelMeta.default("fcn32s_vgg16"),
                    training_state=state)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())

    stored = torch.load(tmp_path / "m.pt", weights_only=True)["training_state"]
    assert stored["iteration"] == 7
    assert torch.equal(stored["numpy_array"], torch.arange(4, dtype=torch.int32))
    assert stored["numpy_scalar"] == 1.5 and type(stored["numpy_scalar"]) is float
    opt2 = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    opt2.load_state_dict(stored["optimizer"])
    assert opt2.state_dict()["param_groups"][0]["momentum"] == 0.99
    restore_rng_state(stored["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    gen = np.random.default_rng()
    gen.bit_generator.state = stored["generator"]
    assert gen.random() == np.random.default_rng(5).random()


def test_unstorable_training_state_is_refused_and_nothing_written(tmp_path):
    model = _model("fcn_alexnet")
    path = tmp_path / "m.pt"
    with pytest.raises(FCNError, match=r"training_state\['bad'\]\[1\] is a set; a checkpoint "
                                       r"stores only"):
        save_checkpoint(path, model=model, meta=ModelMeta.default("fcn_alexnet"),
                        training_state={"bad": [1, {2}]})
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model = _model("fcn_alexnet")
    path = save_checkpoint(tmp_path / "m.pt", model=model, meta=ModelMeta.default("fcn_alexnet"))
    before = path.read_bytes()

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(FCNError, match=r"cannot write .*m\.pt: disk full"):
        save_checkpoint(path, model=model, meta=ModelMeta.default("fcn_alexnet"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_save_checks_meta_and_model(tmp_path):
    model = _model("fcn_alexnet")
    with pytest.raises(FCNError, match=r"meta describes fcn_googlenet with 21 classes but the "
                                       r"model is fcn_alexnet with 21 classes"):
        save_checkpoint(tmp_path / "m.pt", model=model, meta=ModelMeta.default("fcn_googlenet"))
    with pytest.raises(FCNError, match=r"needs a model built by create_model"):
        save_checkpoint(tmp_path / "m.pt", model=torch.nn.Conv2d(1, 1, 1),
                        meta=ModelMeta.default("fcn_alexnet"))
    with pytest.raises(FCNError, match=r"output folder .*missing does not exist"):
        save_checkpoint(tmp_path / "missing" / "m.pt", model=model,
                        meta=ModelMeta.default("fcn_alexnet"))


def test_load_errors(tmp_path):
    with pytest.raises(FCNError, match=r"checkpoint .*none\.pt does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    with pytest.raises(FCNError, match=r"is not a file"):
        load_checkpoint(tmp_path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(FCNError, match=r"corrupt\.pt is not a readable fcn-deploy checkpoint: "
                                       r"torch\.load failed"):
        load_model(corrupt)
    good = save_checkpoint(tmp_path / "good.pt", model=_model("fcn_alexnet"),
                           meta=ModelMeta.default("fcn_alexnet"))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(FCNError, match=r"truncated\.pt is not a readable fcn-deploy checkpoint"):
        load_checkpoint(truncated)
    bare = tmp_path / "bare.pt"
    torch.save(_model("fcn_alexnet").state_dict(), bare)
    with pytest.raises(FCNError, match=r"bare\.pt is not an fcn-deploy checkpoint: it holds a "
                                       r"bare state_dict"):
        load_checkpoint(bare)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": FORMAT, "obj": ModelMeta.default("fcn_alexnet")}, pickled)
    with pytest.raises(FCNError, match=r"pickled\.pt is not a readable fcn-deploy checkpoint"):
        load_checkpoint(pickled)  # a pickled class is refused by weights_only=True


def _rewrite(path, tmp_path, **changes):
    ckpt = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del ckpt[key]
        else:
            ckpt[key] = value
    out = tmp_path / "edited.pt"
    torch.save(ckpt, out)
    return out


def test_format_version_and_missing_keys(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model=_model("fcn_googlenet"),
                           meta=ModelMeta.default("fcn_googlenet"))
    with pytest.raises(FCNError, match=r"format_version 2 is not supported \(this toolkit reads "
                                       r"up to 1\)"):
        load_checkpoint(_rewrite(path, tmp_path, format_version=2))
    with pytest.raises(FCNError, match=r"checkpoint is missing state_dict"):
        load_checkpoint(_rewrite(path, tmp_path, state_dict=None))
    with pytest.raises(FCNError, match=r"it holds format 'other'"):
        load_checkpoint(_rewrite(path, tmp_path, format="other"))
    sd = dict(torch.load(path, weights_only=True)["state_dict"])
    sd["score_fr.weight"] = torch.zeros(21, 3, 1, 1)
    del sd["score_fr.bias"]
    with pytest.raises(FCNError, match=r"weights do not fit fcn_googlenet .*missing score_fr\.bias; "
                                       r"score_fr\.weight has shape \(21, 3, 1, 1\), expected "
                                       r"\(21, 64, 1, 1\)"):
        load_model(_rewrite(path, tmp_path, state_dict=sd))
    meta = torch.load(path, weights_only=True)["meta"]
    with pytest.raises(FCNError, match=r"edited\.pt: unknown model 'fcn2s'; valid names"):
        load_model(_rewrite(path, tmp_path, arch="fcn2s", meta={**meta, "arch": "fcn2s"}))


def test_load_model_checks_arch_and_class_count(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model=_model("fcn16s_vgg16", num_classes=3),
                           meta=ModelMeta.default("fcn16s_vgg16", 3))
    with pytest.raises(FCNError, match=r"holds a fcn16s_vgg16 model, expected fcn8s_vgg16"):
        load_model(path, arch="fcn8s_vgg16")
    with pytest.raises(FCNError, match=r"has 3 classes, expected 21"):
        load_model(path, num_classes=21)
    model, meta = load_model(path, arch="fcn16s_vgg16", num_classes=3)
    assert model.num_classes == meta.num_classes == 3
    with pytest.raises(FCNError, match=r"metadata says fcn_alexnet with 3 classes, the weights are "
                                       r"fcn16s_vgg16 with 3"):
        ckpt = torch.load(path, weights_only=True)
        load_model(_rewrite(path, tmp_path, meta={**ckpt["meta"], "arch": "fcn_alexnet"}))
