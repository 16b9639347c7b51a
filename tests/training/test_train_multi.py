"""fcn-train on the multi-head (SIFT Flow) and multi-input (NYUD RGB-HHA) nets, on CPU."""
import json

import numpy as np
import pytest
import torch

from fcn_deploy.constants import NYUD_HHA_MEAN
from fcn_deploy.datasets import create_dataset
from fcn_deploy.errors import FCNError
from fcn_deploy.models import create_model, load_checkpoint, load_model
from training.cli import main
from training.data import TorchSegmentation, collate
from training.losses import segmentation_loss
from training.trainer import evaluate_heads

SMALL = ["--width", "0.0625", "--dataset-option", "min_size=32", "--dataset-option",
         "max_size=40", "--dataset-option", "num_classes=4", "--batch-size", "2",
         "--val-limit", "2", "--threads", "1", "--no-progress"]


def test_two_head_siftflow_trains_with_summed_loss_and_per_head_metrics(tmp_path, capsys):
    out = tmp_path / "sift"
    assert main(["--arch", "siftflow_fcn16s", "--dataset", "synthetic-twohead:4", *SMALL,
                 "--max-iters", "2", "--eval-every", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert report["heads"] == {"sem": 4, "geo": 3}
    geo = report["final"]["heads"]["geo"]
    assert set(geo) >= {"pixel_accuracy", "mean_iu"} and len(geo["per_class_iu"]) == 3
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2] and "geo_pixel_accuracy" in log[0]
    md = (out / "report.md").read_text()
    assert "Head geo" in md and "| 2 angular |" in md
    model, meta = load_model(out / "last.pt")
    assert [(h.name, h.num_classes, h.scores_output) for h in meta.head_specs()] == [
        ("sem", 4, "scores_sem"), ("geo", 3, "scores_geo")]
    assert meta.heads[1]["class_names"] == ["background", "round", "angular"]
    assert meta.heads[0]["class_names"] == meta.class_names and "heads" not in meta.extra
    assert model.arch_kwargs["geo_classes"] == 3
    # exact resume holds for the two-head net as for the others
    straight = tmp_path / "straight"
    assert main(["--arch", "siftflow_fcn16s", "--dataset", "synthetic-twohead:4", *SMALL,
                 "--max-iters", "3", "--eval-every", "1", "--out", str(straight)]) == 0
    assert main(["--resume", "--out", str(out), "--max-iters", "3", "--no-progress"]) == 0
    a = load_checkpoint(straight / "last.pt")["state_dict"]
    b = load_checkpoint(out / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_loss_is_the_sum_of_the_heads_losses():
    data = create_dataset("synthetic-twohead:2", min_size=32, max_size=36, num_classes=4)
    batch = collate([TorchSegmentation(data)[(i, False)] for i in range(2)])
    assert set(batch.head_labels) == {"geo"}
    assert batch.head_labels["geo"].shape == batch.labels.shape
    torch.manual_seed(0)
    model = create_model("siftflow_fcn32s", num_classes=4, geo_classes=3, width=1 / 16)
    with torch.no_grad():
        for name in model.score_layers:
            model.get_submodule(name).weight.normal_(0, 0.1)
    with torch.no_grad():
        out = model.eval()(batch.images)
    sem = segmentation_loss(out["sem"], batch.labels, normalize=False)
    geo = segmentation_loss(out["geo"], batch.head_labels["geo"], normalize=False)
    assert float(sem) > 0 and float(geo) > 0
    # the geo labels are the shape classes mapped (0 -> 0, disc 1 -> 1, square 2 -> 2, ...)
    lab, g = batch.labels.numpy(), batch.head_labels["geo"].numpy()
    assert np.array_equal(g[lab == 255], lab[lab == 255])
    assert set(zip(lab[lab != 255].tolist(), g[lab != 255].tolist())) <= {(0, 0), (1, 1), (2, 2),
                                                                         (3, 2)}
    metrics = evaluate_heads(model, [batch], heads={"sem": 4, "geo": 3}, ignore_label=255,
                             device=torch.device("cpu"))
    assert metrics["geo"].num_pixels == int((g != 255).sum())
    assert metrics["sem"].num_pixels == int((lab != 255).sum())


def test_two_input_late_fusion_trains(tmp_path, capsys):
    out = tmp_path / "rgbhha"
    assert main(["--arch", "nyud_fcn16s_color_hha", "--dataset", "synthetic-rgbd:4", *SMALL,
                 "--max-iters", "2", "--eval-every", "2", "--out", str(out)]) == 0
    assert "final (iteration 2)" in capsys.readouterr().out
    model, meta = load_model(out / "last.pt")
    assert [(i.name, i.channels, i.encoding) for i in meta.input_specs()] == [
        ("image", 3, "image"), ("hha", 3, "image")]
    assert meta.input_specs()[0].mean == pytest.approx(meta.mean)
    assert meta.input_specs()[1].mean == pytest.approx(NYUD_HHA_MEAN)
    assert meta.input_specs()[1].channel_order == "RGB"
    # the HHA stream learned too: its first conv moved from its initial values
    torch.manual_seed(0)
    fresh = create_model("nyud_fcn16s_color_hha", num_classes=4, width=0.0625)
    assert not torch.equal(fresh.hha.conv1_1.weight, model.hha.conv1_1.weight)


def test_model_and_data_must_agree(tmp_path, capsys):
    assert main(["--arch", "siftflow_fcn32s", "--dataset", "synthetic:4", *SMALL,
                 "--max-iters", "1", "--out", str(tmp_path / "a")]) == 2
    assert ("siftflow_fcn32s has the heads sem, geo but the dataset synthetic:4 labels score"
            in capsys.readouterr().err)
    assert main(["--arch", "nyud_fcn32s_color_d", "--dataset", "synthetic-twohead:4", *SMALL,
                 "--max-iters", "1", "--out", str(tmp_path / "b")]) == 2
    assert "nyud_fcn32s_color_d has the heads score but the dataset" in capsys.readouterr().err
    assert main(["--arch", "nyud_fcn32s_color_d", "--dataset", "synthetic:4", *SMALL,
                 "--max-iters", "1", "--out", str(tmp_path / "c")]) == 2
    assert ("takes the input(s) depth, which the dataset synthetic:4 does not carry"
            in capsys.readouterr().err)


def test_siftflow_layout_trains_with_the_reference_mean(tmp_path, capsys):
    """The real layout end to end (a tiny SIFT Flow tree written here): both heads trained and
    scored, and the image mean is the reference's SIFT Flow mean, kept in the metadata."""
    import cv2
    import scipy.io

    from fcn_deploy.constants import SIFTFLOW_MEAN_BGR
    from fcn_deploy.datasets.siftflow import SIFTFLOW_SUBDIR

    root = tmp_path / "SiftFlowDataset"
    for sub in ("Images", "SemanticLabels", "GeoLabels"):
        (root / sub / SIFTFLOW_SUBDIR).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(root / "Images" / SIFTFLOW_SUBDIR / f"{name}.jpg"),
                    rng.integers(0, 256, (24, 28, 3), dtype=np.uint8))
        scipy.io.savemat(root / "SemanticLabels" / SIFTFLOW_SUBDIR / f"{name}.mat",
                         {"S": rng.integers(0, 34, (24, 28))})
        scipy.io.savemat(root / "GeoLabels" / SIFTFLOW_SUBDIR / f"{name}.mat",
                         {"S": rng.integers(-1, 4, (24, 28))})
    (root / "trainval.txt").write_text("a\nb\n")
    (root / "test.txt").write_text("c\n")
    out = tmp_path / "run"
    assert main(["--arch", "siftflow_fcn32s", "--width", "0.0625", "--dataset", f"siftflow:{root}",
                 "--val-dataset", f"siftflow:{root}:test", "--recipe", "synthetic-demo",
                 "--max-iters", "1", "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    model, meta = load_model(out / "last.pt")
    assert meta.mean == pytest.approx(list(SIFTFLOW_MEAN_BGR))
    assert meta.num_classes == 33 and meta.class_names[-1] == "window"
    assert meta.heads[1]["class_names"] == ["horizontal", "vertical", "sky"]
    report = json.loads((out / "report.json").read_text())
    assert report["final"]["heads"]["geo"]["num_pixels"] > 0


def test_an_hha_only_net_is_fed_the_hha_image_not_the_colour_image():
    from types import SimpleNamespace

    from training.trainer import model_inputs

    batch = SimpleNamespace(images=torch.zeros(1, 3, 4, 4),
                            inputs={"hha": torch.ones(1, 3, 4, 4), "depth": torch.full((1, 1, 4, 4), 2.0)})
    x, rest = model_inputs(["hha"], batch, torch.device("cpu"))
    assert torch.equal(x, batch.inputs["hha"]) and rest == {}
    x, rest = model_inputs(["image", "depth"], batch, torch.device("cpu"))
    assert torch.equal(x, batch.images) and list(rest) == ["depth"]
    assert torch.equal(rest["depth"], batch.inputs["depth"])


def test_late_fusion_streams_start_from_trained_single_stream_nets(tmp_path, capsys):
    """The reference's RGB-HHA recipe: train RGB and HHA FCN-32s, transplant them into the two
    streams (--init-stream), then train the fused net."""
    from fcn_deploy.models.checkpoint import save_checkpoint
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models.surgery import transplant_streams

    torch.manual_seed(1)
    rgb = create_model("nyud_fcn32s_color", num_classes=4, width=0.0625)
    hha = create_model("nyud_fcn32s_hha", num_classes=4, width=0.0625)
    for net in (rgb, hha):
        with torch.no_grad():  # random trunk and scores; the upsampling stays bilinear
            for name, p in net.named_parameters():
                if not name.startswith("upscore"):
                    p.normal_(0, 0.1)
    paths = {}
    for name, net in (("color", rgb), ("hha", hha)):
        paths[name] = tmp_path / f"{name}.pt"
        save_checkpoint(paths[name], model=net, meta=ModelMeta.default(net.arch, 4), metrics={},
                        training_state=None)
    fused = create_model("nyud_fcn16s_color_hha", num_classes=4, width=0.0625)
    bilinear = fused.upscore2.weight.clone()
    report = transplant_streams(fused, paths)
    assert torch.equal(fused.color.conv1_1.weight, rgb.conv1_1.weight)
    assert torch.equal(fused.hha.score_fr.weight, hha.score_fr.weight)
    assert "color.score_pool4.weight" in report.initialized  # 16s' new score layer: zero
    assert not fused.color.score_pool4.weight.any()
    assert torch.equal(fused.upscore2.weight, bilinear) and "color: upscore.weight" in report.ignored
    # the fused 32s net (no score_pool4) at init is exactly the sum of the two nets' scores
    fused32 = create_model("nyud_fcn32s_color_hha", num_classes=4, width=0.0625)
    transplant_streams(fused32, {"color": rgb, "hha": hha})
    for net in (fused32, rgb, hha):
        net.eval()  # no dropout
    x, h = torch.randn(1, 3, 40, 40), torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(fused32(x, hha=h), rgb(x) + hha(h), atol=1e-5)
    with pytest.raises(FCNError, match="no stream depth in nyud_fcn16s_color_hha"):
        transplant_streams(fused, {"depth": rgb})
    wide = create_model("nyud_fcn32s_color", num_classes=5, width=0.0625)
    with pytest.raises(FCNError, match=r"stream color: score_fr.weight has shape \(5, "):
        transplant_streams(fused, {"color": wide})

    out = tmp_path / "fused"
    assert main(["--arch", "nyud_fcn16s_color_hha", "--dataset", "synthetic-rgbd:4", *SMALL,
                 "--max-iters", "1", "--eval-every", "1", "--out", str(out),
                 "--init-stream", f"color={paths['color']}",
                 "--init-stream", f"hha={paths['hha']}"]) == 0
    capsys.readouterr()
    assert main(["--arch", "nyud_fcn16s_color_hha", "--dataset", "synthetic-rgbd:4", *SMALL,
                 "--out", str(tmp_path / "x"), "--init-stream", "color"]) == 2
    assert "--init-stream 'color': expected STREAM=CHECKPOINT" in capsys.readouterr().err
