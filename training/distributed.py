"""Several processes, one run: torchrun's environment, the process group, the trainer's collectives.

What an N-process step is. Every process takes ``accumulate`` batches of ``batch_size`` images
of the one image order that a single process would read (a function of seed and epoch), batch
``k`` of the stream going to rank ``k mod N``; DistributedDataParallel averages the gradients
over the ranks, each rank having already averaged over its ``accumulate`` batches. So an
N-process step is exactly one process with ``accumulate x N`` accumulated batches over the same
images: the same gradient (the sum of the same terms, in another order), the same step. With
the reference recipes (batch 1, summed loss, Caffe's ``iter_size`` averaging the accumulated
gradients) N processes make one N-image step, the mean of N per-image gradients.

Only rank 0 writes files and prints progress; validation runs on every rank's share of the
validation images (no image twice: shares differ in size by at most one) and the confusion
matrices are summed, so the metrics are those of the whole set. A stop request (SIGINT/SIGTERM)
on any rank is summed over the ranks after every step, so all ranks stop after the same step.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fcn_deploy.errors import FCNError


@dataclass(frozen=True)
class World:
    """This process's place in a run: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints progress."""
        return self.rank == 0


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """The World that torchrun describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (one process
    without them)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return World()
    try:
        world = World(rank=int(env.get("RANK", "0")), world_size=int(env["WORLD_SIZE"]),
                      local_rank=int(env.get("LOCAL_RANK", "0")))
    except ValueError:
        raise FCNError(f"RANK={env.get('RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r}, "
                       f"LOCAL_RANK={env.get('LOCAL_RANK')!r}: expected integers (as torchrun "
                       "sets them)") from None
    if world.world_size < 1 or not 0 <= world.rank < world.world_size or world.local_rank < 0:
        raise FCNError(f"RANK={world.rank} and WORLD_SIZE={world.world_size} do not describe a "
                       "process of the run (expected 0 <= RANK < WORLD_SIZE)")
    return world


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random streams (dropout): rank 0 keeps ``seed``, so a
    one-process run is unchanged; the others get independent streams."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


class Collectives:
    """The few collective operations the trainer needs; with one process each is the identity.

    ``start`` joins the process group (NCCL for CUDA, gloo for the CPU; rendezvous from torchrun's
    ``MASTER_ADDR``/``MASTER_PORT``), ``close`` leaves it.
    """

    def __init__(self, world: World, device) -> None:
        self.world = world
        self.device = device
        self._started = False

    def start(self) -> None:
        if not self.world.distributed:
            return
        import torch.distributed as dist

        backend = "nccl" if self.device.type == "cuda" else "gloo"
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise FCNError(f"{self.world.world_size} processes but {name} is not set; launch "
                               "with torchrun (or fcn-train --nproc N)")
        dist.init_process_group(backend, rank=self.world.rank, world_size=self.world.world_size)
        self._started = True

    def close(self) -> None:
        if self._started:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._started = False

    def _tensor(self, values, dtype):
        import torch

        return torch.tensor(values, dtype=dtype, device=self.device)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over the ranks (float64)."""
        if not self.world.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        t = self._tensor(list(values), torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        if not self.world.distributed:
            return bool(flag)
        return self.sum([1.0 if flag else 0.0])[0] > 0

    def sum_counts(self, counts: np.ndarray) -> np.ndarray:
        """Integer counts (a confusion matrix) summed over the ranks, exactly (int64)."""
        if not self.world.distributed:
            return counts
        import torch
        import torch.distributed as dist

        t = self._tensor(np.asarray(counts, dtype=np.int64), torch.int64)
        dist.all_reduce(t)
        return t.cpu().numpy().reshape(np.shape(counts))

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` as a list on rank 0 (None on the others)."""
        if not self.world.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world.world_size if self.world.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        """Wait until every rank is here (before a rank may exit while rank 0 still writes)."""
        if self.world.distributed:
            import torch.distributed as dist

            dist.barrier()

    def agree(self, error: str | None) -> None:
        """Raise on every rank if ``error`` is set on any.

        One process: :class:`FCNError`. Several: rank 0 prints ``error: ...`` once (every failing
        rank's message, identical ones merged), then all ranks raise :class:`ReportedByRankZero`
        together -- no rank exits before the message is out (a launcher stops the others as
        soon as one exits).
        """
        if not self.world.distributed:
            if error:
                raise FCNError(error)
            return
        if not self.any(error is not None):
            return
        import torch.distributed as dist

        errors: list[str | None] = [None] * self.world.world_size
        dist.all_gather_object(errors, error)
        failed = [(rank, e) for rank, e in enumerate(errors) if e]
        if len({e for _, e in failed}) == 1:
            message = failed[0][1]
        else:
            message = "; ".join(f"rank {rank}: {e}" for rank, e in failed)
        if self.world.main:
            print(f"error: {message}", file=sys.stderr, flush=True)
        self.barrier()
        raise ReportedByRankZero(message)


class ReportedByRankZero(FCNError):
    """A user error of a multi-process run that rank 0 has printed (the command exits 2 without
    printing it again)."""


_LAUNCHER_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP",
                                                             "SIGQUIT") if hasattr(signal, name))


def launch(argv: Sequence[str], *, nproc: int) -> int:
    """Run ``python -m training.cli argv`` in ``nproc`` processes on this machine, as
    ``torchrun --standalone --nproc_per_node nproc -m training.cli argv`` does (torch's own
    launcher, in this process); returns 0, or 2 when a process failed (it printed why).

    Ctrl-C / SIGTERM is passed on to the processes, which stop after the current step, save
    last.pt and exit; then :class:`KeyboardInterrupt` is raised here.
    """
    import uuid

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise FCNError(f"--nproc must be >= 1, got {nproc}")
    # As torchrun: one OpenMP thread per process unless told otherwise (--threads sets torch's).
    omp = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = omp or "1"
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          logs_specs=DefaultLogsSpecs())
    # The launcher installs its own handlers (to pass signals on); give the caller's back after.
    handlers = {sig: signal.getsignal(sig) for sig in _LAUNCHER_SIGNALS}
    # Its log lines would repeat what the processes said; a process that died without saying
    # (a crash, a kill) is reported below instead.
    logs = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
            if name.startswith("torch.distributed.elastic")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.CRITICAL)
    try:
        # ``training.cli`` from a checkout, ``fcn_deploy.training.cli`` once installed (pyproject).
        elastic_launch(config, sys.executable)("-m", f"{__package__}.cli", *argv)
    except ChildFailedError as exc:
        # 2: a user error, printed by rank 0; 130: stopped by a signal after saving last.pt.
        # A negative code is a process the launcher killed once another had exited.
        codes = {rank: f.exitcode for rank, f in sorted(exc.failures.items())}
        if 2 in codes.values():
            return 2
        if 130 in codes.values() and all(c == 130 or c < 0 for c in codes.values()):
            raise KeyboardInterrupt from None
        raise FCNError("training process(es) failed: " + ", ".join(
            f"rank {rank} exit code {code}" for rank, code in codes.items())) from None
    except SignalException:
        raise KeyboardInterrupt from None
    finally:
        if omp is None:
            del os.environ["OMP_NUM_THREADS"]
        for log, level in zip(logs, levels):
            log.setLevel(level)
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return 0
