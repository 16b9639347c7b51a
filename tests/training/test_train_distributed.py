"""Distributed training (DDP, 2 gloo processes on the CPU) against one process, and its resume.

Every multi-process run here is real: processes on 127.0.0.1, a gloo process group, gradients
exchanged by DistributedDataParallel, launched as the README says (torchrun on two "machines",
fcn-train --nproc) or with torch.multiprocessing where a rank needs a hook.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcn_deploy.models import load_checkpoint, load_model
from train_ddp_helpers import CLI_ARGS, DATA_OPTIONS, cli_config, free_port, run_ranks
from fcn_deploy.errors import FCNError
from training.cli import main, processes_to_launch
from training.data import ResumableBatchSampler
from training.distributed import World, world_from_env
from training.trainer import train


def _state(path):
    return load_checkpoint(path)["training_state"], load_checkpoint(path)["state_dict"]


def _log(path):
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
            for line in path.read_text().splitlines()]


def test_sampler_shares_the_one_order_between_ranks_across_epochs():
    one = ResumableBatchSampler(5, batch_size=2, seed=3, mirror=True)
    ranks = [ResumableBatchSampler(5, batch_size=2, seed=3, mirror=True, rank=r, world_size=2)
             for r in range(2)]
    one.set_epoch(0, start=2)
    expected = list(one)  # batches 0, 1 of the epoch from item 2: [2, 3], [4]
    for r, s in enumerate(ranks):
        s.set_epoch(0, start=2)
        assert list(s) == expected[r::2] and len(s) == 1
        s.set_epoch(1, offset=1)  # the next epoch goes on numbering where this one stopped
    one.set_epoch(1)
    assert list(ranks[1]) == list(one)[0::2] and list(ranks[0]) == list(one)[1::2]
    assert one.advance(0, 2, 2) == (0, 5) and one.advance(0, 5, 1) == (1, 2)


def test_world_from_torchrun_environment():
    assert world_from_env({}) == World()
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    with pytest.raises(FCNError, match="RANK=4 and WORLD_SIZE=4 do not describe"):
        world_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_two_processes_equal_one_process_accumulating_their_two_images(tmp_path, monkeypatch):
    # The reference's heavy recipe: summed loss, batch 1, momentum 0.99. 5 images and 2 per step:
    # step 3 takes the epoch's last image and the next epoch's first.
    heavy = {"normalize_loss": False, "momentum": 0.99, "lr": 1e-7, "clip_grad_norm": 0.0,
             "max_iters": 4, "eval_every": 4}
    run_ranks(cli_config(tmp_path / "ddp", recipe=heavy), no_dropout=True)
    # Dropout off in both runs: each rank draws its own masks, one process draws them in
    # sequence, so with dropout on the runs differ by their random masks, not by the reduction.
    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)
    one = train(cli_config(tmp_path / "one", recipe={**heavy, "accumulate": 2}))

    state, weights = _state(tmp_path / "ddp" / "last.pt")
    _, expected = _state(tmp_path / "one" / "last.pt")
    # Exact: each rank's image gradient is computed as in the single process; DDP halves and
    # sums two of them (x/2 + y/2 == (x + y)/2 in IEEE arithmetic: halving is exact, and a sum
    # of two terms does not depend on their order), which is what accumulating 2 images does.
    for key, value in expected.items():
        assert torch.equal(weights[key], value), key
    assert state["losses"].tolist() == pytest.approx(one.losses, rel=1e-12)
    assert (state["epoch"], state["position"]) == (1, 3)  # 8 images of a 5-image order read
    assert weights["score_fr.weight"].abs().max() > 0  # it did train


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The README's multi-machine command, as two 'machines' of one process each on 127.0.0.1,
    uninterrupted (5 steps, evaluated at 2, 4, 5): (out, [(rc, stdout, stderr) per node])."""
    out = tmp_path_factory.mktemp("ddp") / "straight"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    port = free_port()
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    nodes = [subprocess.Popen(
        [torchrun, "--nnodes", "2", "--node_rank", str(rank), "--nproc_per_node", "1",
         "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "training.cli",
         *CLI_ARGS, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for rank in (0, 1)]
    results = []
    for node in nodes:
        try:
            stdout, stderr = node.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for n in nodes:
                n.kill()
            raise
        results.append((node.returncode, stdout, stderr))
    return out, results


def test_two_machine_run_writes_once_and_reduces_the_metrics_exactly(straight):
    out, nodes = straight
    assert [rc for rc, _, _ in nodes] == [0, 0], nodes
    # Progress and results are printed once, by rank 0 (on the first machine).
    assert nodes[0][1].count("final (iteration 5)") == 1 and "iteration" not in nodes[1][1]
    assert "error" not in nodes[0][2] + nodes[1][2]
    assert sorted(p.name for p in out.iterdir()) == \
        ["best.pt", "curves.png", "last.pt", "log.jsonl", "report.json", "report.md"]
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == 2 and report["iterations"] == 5
    state, _ = _state(out / "last.pt")
    assert state["config"]["world_size"] == 2 and len(state["rank_rng"]) == 1

    # One process scores the same weights on the same 3 validation images: the summed confusion
    # matrices of the shares (2 and 1 images, none repeated) give exactly its metrics.
    from fcn_deploy.datasets import create_dataset
    from training.data import TorchSegmentation, make_loader
    from training.trainer import SYNTHETIC_VAL_IMAGES, SYNTHETIC_VAL_SEED, evaluate

    model, meta = load_model(out / "last.pt")
    val = create_dataset(f"synthetic:{SYNTHETIC_VAL_IMAGES}",
                         **{**DATA_OPTIONS, "seed": SYNTHETIC_VAL_SEED})
    loader = make_loader(TorchSegmentation(val, mean=meta.mean),
                         ResumableBatchSampler(3, batch_size=1, shuffle=False))
    seg = evaluate(model, loader, num_classes=3, ignore_label=255, device=torch.device("cpu"))
    assert report["final"] == {**seg.as_dict(), "iteration": 5}


def test_resume_starts_as_many_processes_as_the_stopped_run(straight):
    out, _ = straight
    assert processes_to_launch(None, resume=out / "last.pt") == 2
    assert processes_to_launch(3, resume=out / "last.pt") == 3  # reported as a change
    assert processes_to_launch(None, resume=None) == 1
    with pytest.raises(FCNError, match="--nproc must be >= 1, got 0"):
        processes_to_launch(0, resume=None)


def test_a_signal_on_one_rank_stops_both_and_the_resumed_run_is_identical(straight, tmp_path,
                                                                           capfd):
    straight_out, nodes = straight
    assert [rc for rc, _, _ in nodes] == [0, 0], nodes
    out = tmp_path / "run"
    # SIGTERM on rank 1 after step 3: both ranks finish step 3, rank 0 saves, both stop.
    run_ranks(cli_config(out), stop_rank=1, stop_at=3)
    state, _ = _state(out / "last.pt")
    assert state["iteration"] == 3 and len(state["rank_rng"]) == 1
    capfd.readouterr()
    # Resume with the README's command and no other option: everything comes from last.pt.
    assert main(["--resume", "--out", str(out), "--nproc", "2", "--no-progress"]) == 0
    captured = capfd.readouterr()
    assert "note: resuming" not in captured.err
    assert captured.out.count("iteration 4: mean IU") == 1  # printed once, by rank 0
    assert captured.out.count("final (iteration 5)") == 1

    a_state, a = _state(straight_out / "last.pt")
    b_state, b = _state(out / "last.pt")
    for key, value in a.items():
        assert torch.equal(b[key], value), key
    for sa, sb in zip(a_state["optimizer"]["state"].values(),
                      b_state["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert b_state["losses"].tolist() == a_state["losses"].tolist()
    # Rank 1's dropout stream was restored too (else its masks, and the weights, would differ).
    assert torch.equal(b_state["rank_rng"][0]["torch"], a_state["rank_rng"][0]["torch"])
    assert _log(out / "log.jsonl") == _log(straight_out / "log.jsonl")
    assert np.isfinite(b_state["losses"].numpy()).all()


def test_a_corrupt_image_in_one_ranks_share_stops_both_with_one_error_line(tmp_path, capfd):
    from fcn_deploy.datasets import SyntheticShapes
    from fcn_deploy.imageio import write_image, write_label_png

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    shapes = SyntheticShapes(num_images=3, **DATA_OPTIONS)
    for i, sample in enumerate(shapes):
        write_image(images / f"im{i}.png", sample.image)
        write_label_png(masks / f"im{i}.png", sample.label, shapes.palette)
    (images / "im1.png").write_bytes(b"not a png at all")
    rc = main(["--arch", "fcn8s_vgg16", "--width", "0.0625", "--dataset",
               f"folder:{images},{masks}", "--dataset-option", "num_classes=3", "--batch-size",
               "1", "--max-iters", "2", "--threads", "1", "--no-progress",
               "--out", str(tmp_path / "out"), "--nproc", "2"])
    err = capfd.readouterr().err
    assert rc == 2
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "im1.png" in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "last.pt").exists()
