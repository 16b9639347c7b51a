"""Rank processes for the distributed training tests (imported by the spawned processes, so it
lives in its own module, not in conftest.py or a test module)."""
import os
import signal
import socket
import time

import torch
import torch.multiprocessing as mp

from training.distributed import World
from training.recipes import get_recipe
from training.trainer import TrainConfig, train

#: The tiny run every distributed test trains: FCN-8s at 1/16 width on 5 small synthetic images,
#: validated on the first 3 of the 50 validation images (2 ranks: shares of 2 and 1 images).
DATA_OPTIONS = {"min_size": 32, "max_size": 48, "num_classes": 3}
CLI_ARGS = ["--arch", "fcn8s_vgg16", "--width", "0.0625", "--dataset", "synthetic:5",
            "--dataset-option", "min_size=32", "--dataset-option", "max_size=48",
            "--dataset-option", "num_classes=3", "--batch-size", "1", "--max-iters", "5",
            "--eval-every", "2", "--val-limit", "3", "--threads", "1", "--no-progress"]


def cli_config(out, **changes) -> TrainConfig:
    """The TrainConfig that fcn-train builds from CLI_ARGS (same recipe, data, seed, threads)."""
    fields = {"batch_size": 1, "max_iters": 5, "eval_every": 2, **changes.pop("recipe", {})}
    recipe = get_recipe("synthetic-demo").replace(**fields)
    fields = dict(arch="fcn8s_vgg16", dataset="synthetic:5", out=out, recipe=recipe,
                  dataset_options=dict(DATA_OPTIONS), width=0.0625, val_limit=3, threads=1,
                  progress=False)
    fields.update(changes)
    return TrainConfig(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_dropout(self, x):
    return x


def _rank(rank, world_size, port, config, no_dropout, stop_rank, stop_at):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    if no_dropout:
        torch.nn.Dropout.forward = _no_dropout
    if rank == stop_rank:
        def hook(iteration, loss):
            if iteration == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)  # a real signal, on this rank only
        config.on_iteration = hook
    config.world = World(rank=rank, world_size=world_size, local_rank=rank)
    try:
        train(config)
    except KeyboardInterrupt:
        if stop_at is None:
            raise


def run_ranks(config, *, world_size=2, no_dropout=False, stop_rank=None, stop_at=None,
              timeout=180):
    """Train ``config`` in ``world_size`` gloo processes on 127.0.0.1 (``torch.multiprocessing``).

    ``no_dropout``: dropout passes its input through. ``stop_rank``/``stop_at``: that rank sends
    itself SIGTERM after step ``stop_at``. A rank's exception fails the call; so does the timeout.
    """
    ctx = mp.start_processes(
        _rank, args=(world_size, free_port(), config, no_dropout, stop_rank, stop_at),
        nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ctx.processes:
                process.kill()
            raise AssertionError(f"{world_size} ranks did not finish in {timeout} s")
