"""fcn-train end to end on tiny synthetic data, resume from the folder, clean user errors."""
import json
import subprocess
import sys

import pytest

from training.cli import main

TINY = ["--arch", "fcn8s_vgg16", "--width", "0.0625", "--dataset", "synthetic:4",
        "--dataset-option", "min_size=32", "--dataset-option", "max_size=40",
        "--dataset-option", "num_classes=3", "--batch-size", "1", "--val-limit", "2",
        "--threads", "1", "--no-progress"]


def test_train_two_iterations_then_resume_from_the_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY + ["--max-iters", "2", "--eval-every", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "final (iteration 2): pixel acc" in captured.out
    assert "recipe synthetic-demo: lr 0.01" in captured.err
    for name in ("best.pt", "last.pt", "log.jsonl", "curves.png", "report.json", "report.md"):
        assert (out / name).is_file(), name
    assert [json.loads(l)["iteration"] for l in (out / "log.jsonl").read_text().splitlines()] \
        == [1, 2]
    # Everything but the new length comes from the checkpoint.
    assert main(["--resume", "--out", str(out), "--max-iters", "3", "--no-progress",
                 "--threads", "1"]) == 0
    assert "final (iteration 3)" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["iterations"] == 3 and report["dataset"] == "synthetic:4"
    assert report["recipe"]["batch_size"] == 1 and report["recipe"]["max_iters"] == 3
    assert report["arch_kwargs"]["width"] == 0.0625 and report["num_classes"] == 3


def _log_without_times(path):
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
            for line in path.read_text().splitlines()]


def test_resume_restores_every_result_option_and_reports_a_changed_one(tmp_path, capsys):
    import torch

    from fcn_deploy.models import load_checkpoint

    # --val-limit, --threads and --seed are given once, at the start, and never again.
    run = TINY + ["--seed", "3", "--eval-every", "1"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(run + ["--max-iters", "3", "--out", str(straight)]) == 0
    assert main(run + ["--max-iters", "2", "--out", str(stopped)]) == 0
    capsys.readouterr()
    assert main(["--resume", "--out", str(stopped), "--max-iters", "3", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "note: resuming" in err and "--max-iters 2 -> 3" in err
    assert "--val-limit" not in err and "--seed" not in err and "--threads" not in err
    config = load_checkpoint(stopped / "last.pt")["training_state"]["config"]
    assert (config["val_limit"], config["seed"], config["threads"]) == (2, 3, 1)
    # The same run: same validation images, so the same metrics at every step and best.pt.
    assert _log_without_times(stopped / "log.jsonl") == _log_without_times(straight / "log.jsonl")
    a, b = load_checkpoint(straight / "best.pt"), load_checkpoint(stopped / "best.pt")
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())

    # A changed option is used, said on stderr and kept in the report.
    assert main(["--resume", "--out", str(stopped), "--max-iters", "4", "--val-limit", "0",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--val-limit 2 -> (default)" in err and "--max-iters 3 -> 4" in err
    report = json.loads((stopped / "report.json").read_text())
    assert report["resumes"] == [
        {"iteration": 2, "changed": {"--max-iters": [2, 3]}},
        {"iteration": 3, "changed": {"--val-limit": [2, None], "--max-iters": [3, 4]}}]
    two_images = json.loads((straight / "report.json").read_text())["final"]["num_pixels"]
    assert report["final"]["num_pixels"] > two_images  # all 50 validation images now


def test_resume_from_another_arch_is_a_clean_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY + ["--max-iters", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    rc = main(["--arch", "fcn32s_vgg16", "--resume", str(out / "last.pt"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"error: --resume checkpoint {out / 'last.pt'} holds a fcn8s_vgg16 model; this run " \
           "trains fcn32s_vgg16" in err


@pytest.mark.parametrize("args,message", [
    (["--recipe", "nope"], "error: unknown recipe 'nope'; valid: fcn32s"),
    (["--momentum", "1.5"], "error: recipe 'synthetic-demo': momentum must be in [0, 1)"),
    (["--resume"], "error: --resume without a path needs --out"),
    (["--dataset", "synthetic"], "error: --arch is required"),
    (["--dataset", "synthetic", "--arch", "fcn8s_vgg16"], "error: --out is required"),
    (["--dataset", "synthetic", "--arch", "resnet", "--out", "x"], "unknown model 'resnet'"),
])
def test_option_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = [] if args[0] in ("--resume", "--dataset") else ["--arch", "fcn8s_vgg16", "--dataset",
                                                           "synthetic", "--out", "x"]
    assert main(base + args) == 2
    assert message in capsys.readouterr().err


def test_list_recipes(capsys):
    assert main(["--list-recipes"]) == 0
    out = capsys.readouterr().out
    assert "fcn8s-atonce       1e-10  0.99" in out and "fcn-alexnet        1e-04   0.9" in out


def test_bad_dataset_path_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "training.cli", "--arch", "fcn32s_vgg16", "--dataset",
         f"voc:{tmp_path}/missing", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        f"error: VOC root {tmp_path}/missing does not exist; expected a VOCdevkit folder or its " \
        "VOC2012 folder"
    assert "Traceback" not in proc.stderr


def test_out_folder_holding_the_init_from_checkpoint_is_refused(tmp_path, capsys):
    """--init-from runs/a/best.pt --out runs/a would overwrite the starting checkpoint."""
    out = tmp_path / "run"
    out.mkdir()
    start = out / "best.pt"
    start.write_bytes(b"weights")
    rc = main(TINY + ["--max-iters", "1", "--init-from", str(start), "--out", str(out)])
    assert rc == 2
    assert capsys.readouterr().err.endswith(
        f"error: fcn-train: --out file best.pt {start} is also the --init-from checkpoint "
        f"{start}: writing it would destroy that input; choose another output path\n")
    assert start.read_bytes() == b"weights" and sorted(p.name for p in out.iterdir()) == ["best.pt"]


def test_out_folder_inside_a_folder_dataset_is_refused(tmp_path, capsys):
    """curves.png written among the training images would be read as one by the next run."""
    import cv2
    import numpy as np

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"a{i}.png"), np.full((40, 40, 3), 50 * i, np.uint8))
        cv2.imwrite(str(masks / f"a{i}.png"), np.full((40, 40), i, np.uint8))
    rc = main(["--arch", "fcn8s_vgg16", "--width", "0.0625", "--dataset",
               f"folder:{images},{masks}", "--dataset-option", "class_names=bg,fg",
               "--max-iters", "1", "--out", str(images), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"would be written in the dataset image folder {images}, which this run reads" in err
    assert sorted(p.name for p in images.iterdir()) == ["a0.png", "a1.png"]
