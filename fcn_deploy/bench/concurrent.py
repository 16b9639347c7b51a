"""Client-side latency and throughput with N concurrent requests (fcn-bench --concurrency N).

Made for served models (``triton://host:8000/fcn8s``), where the server's dynamic batcher and
instance groups decide how concurrent requests are run, and it works the same on local files.
Each of N threads has its own Segmenter (a client, or a session, per thread), warms up, waits at
a barrier, then sends requests until ``requests`` have been answered in all; a request is timed
from image to label map (preprocessing, the round trip and postprocessing), as a client sees it.
Throughput is images answered per second of wall time over the timed part.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from fcn_deploy.bench.artifact import segmenter_inputs
from fcn_deploy.bench.report import environment
from fcn_deploy.errors import FCNError
from fcn_deploy.runtime.registry import default_backend
from fcn_deploy.runtime.segmenter import Segmenter
from fcn_deploy.timing import TimingStats, check_counts, summarize


@dataclass
class ConcurrentResult:
    target: str
    backend: str
    shape: tuple[int, int, int, int]
    concurrency: int
    requests: int
    latency: TimingStats
    wall_s: float
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Images answered per second over the timed part, all clients together."""
        return self.requests * self.shape[0] / self.wall_s if self.wall_s > 0 else 0.0

    def records(self) -> list[dict[str, Any]]:
        row = {"kind": "concurrent", "target": self.target, "backend": self.backend,
               "shape": "x".join(map(str, self.shape)), "concurrency": self.concurrency,
               "requests": self.requests, "wall_s": self.wall_s,
               "throughput_ips": self.throughput, **self.latency.flat("latency")}
        return [row, self.environment] if self.environment else [row]

    def markdown(self) -> str:
        s = self.latency
        return "\n".join([
            f"# fcn-bench: {self.target} ({self.backend}), {self.concurrency} concurrent clients",
            "",
            "| shape | clients | requests | latency median ms | p90 ms | p99 ms | max ms | "
            "throughput img/s |",
            "|---|---|---|---|---|---|---|---|",
            f"| {'x'.join(map(str, self.shape))} | {self.concurrency} | {self.requests} | "
            f"{s.median:.1f} | {s.p90:.1f} | {s.p99:.1f} | {s.max:.1f} | {self.throughput:.2f} |",
            ""])


def bench_concurrent(target: str | os.PathLike, *, shape: Sequence[int], concurrency: int,
                     requests: int, warmup: int = 1, backend: str | None = None,
                     options: dict[str, Any] | None = None, seed: int = 0) -> ConcurrentResult:
    """Time ``requests`` predictions of ``shape`` (NxCxHxW) sent by ``concurrency`` threads."""
    check_counts(warmup=warmup, runs=requests)
    if concurrency < 1:
        raise FCNError(f"--concurrency must be >= 1, got {concurrency}")
    if concurrency > requests:  # each client opens the model: the extra ones would only load it
        raise FCNError(f"--concurrency {concurrency} is more than the {requests} requests "
                       f"(--runs): {concurrency - requests} clients would open the model and "
                       "send nothing; raise --runs or lower --concurrency")
    shape = tuple(int(d) for d in shape)
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise FCNError(f"shape {'x'.join(map(str, shape))} must be Nx3xHxW with positive sizes")
    backend = backend or default_backend(target)
    segs = [Segmenter.open(target, backend=backend, **(options or {}))
            for _ in range(concurrency)]
    images, extra = segmenter_inputs(segs[0], shape, seed=seed)  # every input of the net
    latencies: list[float] = []
    errors: list[BaseException] = []
    counter = iter(range(requests))
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def client(seg: Segmenter) -> None:
        try:
            for _ in range(warmup):
                seg.predict_batch(images, **extra)
        except BaseException as exc:  # reported after the barrier, from the main thread
            errors.append(exc)
        start.wait()
        while not errors:
            with lock:
                ticket = next(counter, None)
            if ticket is None:
                return
            t0 = time.perf_counter()
            try:
                seg.predict_batch(images, **extra)
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(seg,), daemon=True) for seg in segs]
    try:
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        for seg in segs:
            seg.close()
    if errors:
        raise errors[0]
    return ConcurrentResult(target=str(target), backend=backend, shape=shape,
                            concurrency=concurrency, requests=len(latencies),
                            latency=summarize(latencies, items=shape[0]), wall_s=wall,
                            environment=environment())
