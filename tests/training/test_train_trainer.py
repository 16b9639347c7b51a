"""The trainer: exact resume after Ctrl-C, checkpoints/logs/report, staged init, clean errors."""
import json
import os
import signal

import numpy as np
import pytest
import torch

from fcn_deploy.errors import FCNError
from fcn_deploy.models import load_checkpoint, load_model
from training.trainer import train


def _interrupt_at(iteration):
    def hook(it, loss):
        if it == iteration:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, handled by the trainer
    return hook


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_config):
    """An uninterrupted 6-step run (shared by several tests)."""
    out = tmp_path_factory.mktemp("straight")
    return out, train(tiny_config(out))


def test_run_writes_checkpoints_log_curves_and_report(straight):
    out, result = straight
    assert result.iterations == 6 and len(result.losses) == 6
    assert all(np.isfinite(result.losses))
    names = {p.name for p in out.iterdir()}
    assert {"last.pt", "best.pt", "log.jsonl", "curves.png", "report.json", "report.md"} <= names
    assert not [n for n in names if n.startswith(".")]  # no temporary files left behind
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    log = _log(out / "log.jsonl")
    assert [r["iteration"] for r in log] == [2, 4, 6]
    for r, (a, b) in zip(log, [(0, 2), (2, 4), (4, 6)]):
        assert r["train_loss"] == pytest.approx(np.mean(result.losses[a:b]))
        assert set(r) >= {"pixel_accuracy", "mean_accuracy", "mean_iu", "fw_iu"}

    last = load_checkpoint(out / "last.pt")  # weights_only=True inside
    state = last["training_state"]
    assert state["iteration"] == 6 and state["config"]["dataset"] == "synthetic:5"
    assert state["losses"].tolist() == result.losses
    assert state["optimizer"]["state"]  # momentum buffers are saved
    model, meta = load_model(out / "best.pt")
    assert meta.class_names == ["background", "disc", "square"]
    assert meta.arch == "fcn8s_vgg16" and meta.arch_kwargs["width"] == 1 / 16
    assert load_checkpoint(out / "best.pt")["training_state"] is None
    best_iu = max(r["mean_iu"] for r in log)
    assert result.best["mean_iu"] == best_iu

    report = json.loads((out / "report.json").read_text())
    assert report["final"]["iteration"] == 6 and report["iterations"] == 6
    assert report["final"]["mean_iu"] == log[-1]["mean_iu"]
    assert len(report["final"]["per_class_iu"]) == 3
    md = (out / "report.md").read_text()
    assert "| 2 square |" in md and "mean IU (%)" in md


def test_ctrl_c_then_resume_is_bit_identical(straight, tmp_path, tiny_config):
    out_a, result_a = straight
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(out, on_iteration=_interrupt_at(3)))
    stopped = load_checkpoint(out / "last.pt")["training_state"]
    assert stopped["iteration"] == 3  # saved at the end of the interrupted iteration
    # Resume with a worker process: the order and mirroring do not depend on it.
    result = train(tiny_config(out, resume=out / "last.pt", workers=1))
    assert result.losses == result_a.losses
    a = load_checkpoint(out_a / "last.pt")
    b = load_checkpoint(out / "last.pt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for sa, sb in zip(a["training_state"]["optimizer"]["state"].values(),
                      b["training_state"]["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    strip = lambda log: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in log]  # noqa
    assert strip(_log(out / "log.jsonl")) == strip(_log(out_a / "log.jsonl"))


def test_staged_init_copies_the_coarser_net(straight, tmp_path, tiny_config):
    src = straight[0] / "best.pt"
    # FCN-8s into FCN-16s: every FCN-16s layer exists in the source; a vanishing rate keeps
    # the copied weights as they were (to 1e-20: exact zeros move by ~1e-33).
    train(tiny_config(tmp_path, arch="fcn16s_vgg16", init_from=src,
                      recipe={"lr": 1e-30, "momentum": 0.0, "max_iters": 1, "eval_every": 1}))
    source = load_checkpoint(src)["state_dict"]
    got = load_checkpoint(tmp_path / "last.pt")["state_dict"]
    for key in ("conv1_1.weight", "fc7.weight", "score_fr.weight", "score_pool4.bias"):
        torch.testing.assert_close(got[key], source[key], rtol=0, atol=1e-20, msg=key)
    assert source["score_fr.weight"].abs().max() > 1e-6  # trained, so not trivially equal


def test_resume_from_another_arch_or_without_state_is_refused(straight, tmp_path, tiny_config):
    last, best = straight[0] / "last.pt", straight[0] / "best.pt"
    with pytest.raises(FCNError, match=r"holds a fcn8s_vgg16 model; this run trains fcn32s_vgg16"):
        train(tiny_config(tmp_path, arch="fcn32s_vgg16", resume=last))
    with pytest.raises(FCNError, match=r"was built with .*'width': 0.0625.*'width': 0.125"):
        train(tiny_config(tmp_path, width=1 / 8, resume=last))
    with pytest.raises(FCNError, match="holds no training state.*--init-from"):
        train(tiny_config(tmp_path, resume=best))
    with pytest.raises(FCNError, match="has 3 classes; this run's data has 4"):
        train(tiny_config(tmp_path, resume=last,
                          dataset_options={"min_size": 32, "max_size": 48, "num_classes": 4}))


def test_bad_setups_fail_cleanly(straight, tmp_path, tiny_config):
    with pytest.raises(FCNError, match="already exists .*--resume"):
        train(tiny_config(straight[0]))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FCNError, match=f"output folder {blocker}/out cannot be created: "
                                       f"{blocker} is a file, not a folder"):
        train(tiny_config(blocker / "out"))
    with pytest.raises(FCNError, match="VOC root /nonexistent/VOCdevkit does not exist"):
        train(tiny_config(tmp_path / "a", dataset="voc:/nonexistent/VOCdevkit"))
    if not torch.cuda.is_available():
        with pytest.raises(FCNError, match="--device cuda asked for CUDA.*no CUDA GPU"):
            train(tiny_config(tmp_path / "b", device="cuda"))
    with pytest.raises(FCNError, match="--amp .*needs --device cuda"):
        train(tiny_config(tmp_path / "c", device="cpu", amp=True))
    with pytest.raises(FCNError, match="--init-from .*init_from_coarser: the source lacks conv1_1"):
        train(tiny_config(tmp_path / "d", init_from=_alexnet_checkpoint(tmp_path)))


def _alexnet_checkpoint(tmp_path):
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models import create_model, save_checkpoint

    model = create_model("fcn_alexnet", num_classes=3, width=1 / 16)
    return save_checkpoint(tmp_path / "alex.pt", model=model,
                           meta=ModelMeta.default("fcn_alexnet", 3))


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_reaches_the_user_naming_the_file(tmp_path, tiny_config, workers):
    from fcn_deploy.datasets import SyntheticShapes
    from fcn_deploy.imageio import write_image, write_label_png

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    shapes = SyntheticShapes(num_images=3, min_size=32, max_size=40, num_classes=3)
    for i, sample in enumerate(shapes):
        write_image(images / f"im{i}.png", sample.image)
        write_label_png(masks / f"im{i}.png", sample.label, shapes.palette)
    (images / "im1.png").write_bytes(b"not a png at all")
    config = tiny_config(tmp_path / "out", dataset=f"folder:{images},{masks}",
                         dataset_options={"num_classes": 3}, workers=workers,
                         recipe={"batch_size": 1, "accumulate": 1, "eval_every": 6})
    with pytest.raises(FCNError, match=r"im1\.png") as info:
        train(config)
    assert "Traceback" not in str(info.value)
    assert not (tmp_path / "out" / "last.pt").exists()


def test_imagenet_init_loads_the_classifier_into_the_backbone(tmp_path, tiny_config):
    from fcn_deploy.models.classifiers import VGG16Classifier

    torch.manual_seed(7)
    classifier = VGG16Classifier(width=1 / 16)
    torch.save(classifier.state_dict(), tmp_path / "vgg16.pth")
    train(tiny_config(tmp_path / "run", arch="fcn32s_vgg16", imagenet=tmp_path / "vgg16.pth",
                      recipe={"lr": 1e-30, "momentum": 0.0, "max_iters": 1, "eval_every": 1}))
    got = load_checkpoint(tmp_path / "run" / "last.pt")["state_dict"]
    source = classifier.state_dict()
    torch.testing.assert_close(got["conv1_1.weight"], source["features.0.weight"], rtol=0,
                               atol=1e-20)
    # fc6 is the first fully connected layer reshaped into a 7x7 convolution
    torch.testing.assert_close(got["fc6.weight"],
                               source["classifier.0.weight"].reshape(got["fc6.weight"].shape),
                               rtol=0, atol=1e-20)
    with pytest.raises(FCNError, match="--imagenet .*vgg16.pth: ImageNet weights: .*shape"):
        train(tiny_config(tmp_path / "run2", arch="fcn32s_vgg16", width=1 / 8,
                          imagenet=tmp_path / "vgg16.pth"))
