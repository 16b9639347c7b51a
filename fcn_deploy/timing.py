"""The one timer and the one statistics summary: every benchmark row is computed this way.

``time_runs`` times one callable, ``time_interleaved_calls`` several side by side, and
``summarize`` turns run times into :class:`TimingStats`. The module sits on the ground floor
(it needs nothing but numpy and :mod:`fcn_deploy.errors`), so quantize/'s speed measurement and
bench/ share it; ``fcn_deploy.bench.stats`` re-exports it under its former name.

Percentiles use linear interpolation between order statistics (numpy's default), so they are
monotone: ``min <= median <= p90 <= p99 <= max`` always holds, and ``min <= mean <= max``.
The coefficient of variation uses the sample standard deviation (ddof=1; 0 for one sample).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from fcn_deploy.errors import FCNError

#: Statistic names in the order reports list them.
STAT_FIELDS = ("min", "median", "mean", "p90", "p99", "max", "std", "cv")


@dataclass(frozen=True)
class TimingStats:
    """Summary of ``n`` timed runs, in milliseconds (``cv`` is a fraction, ``throughput`` items/s).

    ``throughput`` is ``items / mean`` where ``items`` is what one run processed (the batch).
    """

    n: int
    min: float
    median: float
    mean: float
    p90: float
    p99: float
    max: float
    std: float
    cv: float
    throughput: float

    def flat(self, prefix: str) -> dict[str, float | int]:
        """``{prefix_min_ms: ..., prefix_cv: ..., prefix_throughput_ips: ..., prefix_n: ...}``."""
        out: dict[str, float | int] = {f"{prefix}_n": self.n}
        for key, value in asdict(self).items():
            if key == "n":
                continue
            if key == "cv":
                out[f"{prefix}_cv"] = value
            elif key == "throughput":
                out[f"{prefix}_throughput_ips"] = value
            else:
                out[f"{prefix}_{key}_ms"] = value
        return out


def summarize(samples_s: Sequence[float], *, items: int = 1) -> TimingStats:
    """Statistics of run times given in **seconds**; reported in milliseconds."""
    if items < 1:
        raise FCNError(f"items per run must be >= 1, got {items}")
    ms = np.asarray(list(samples_s), dtype=np.float64) * 1e3
    if ms.size == 0:
        raise FCNError("no timed runs to summarize; expected at least one (--runs >= 1)")
    if not np.all(np.isfinite(ms)) or np.any(ms < 0):
        raise ValueError(f"run times must be finite and >= 0, got {ms.tolist()}")
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return TimingStats(
        n=int(ms.size), min=float(ms.min()), median=p50, mean=mean, p90=p90, p99=p99,
        max=float(ms.max()), std=std, cv=(std / mean if mean > 0 else 0.0),
        throughput=(items * 1e3 / mean if mean > 0 else math.inf))


def time_runs(fn: Callable[[], object], *, warmup: int = 1, runs: int = 20,
              progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; return each run's seconds.

    ``progress(i, seconds)`` is called after every timed run (for a progress line).
    """
    check_counts(warmup=warmup, runs=runs)
    for _ in range(warmup):
        fn()
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
        if progress is not None:
            progress(i, samples[-1])
    return samples


def time_interleaved_calls(calls: Mapping[str, Callable[[], object]], *, warmup: int, runs: int,
                           settle_s: float = 0.0, on_run: Callable[[], None] | None = None
                           ) -> dict[str, tuple[list[float], float]]:
    """Time several callables side by side: each warms up ``warmup`` times, then every round
    calls each once, so a change in machine load slows all of them alike.

    ``settle_s``: an untimed pause before each timed call (lets the previous callable's thread
    pool go idle). ``on_run()`` after each timed call (a progress bar). Returns ``{name:
    (seconds of each run, process CPU seconds over its runs)}``; the CPU seconds divided by the
    sum of the runs is how many cores it kept busy.
    """
    check_counts(warmup=warmup, runs=runs)
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu = {name: 0.0 for name in calls}
    for _ in range(runs):
        for name, fn in calls.items():
            if settle_s > 0:
                time.sleep(settle_s)
            c0, start = time.process_time(), time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
            cpu[name] += time.process_time() - c0
            if on_run is not None:
                on_run()
    return {name: (samples[name], cpu[name]) for name in calls}


def check_counts(*, warmup: int, runs: int) -> None:
    """Warm-up may be 0; timed runs must be at least 1."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise FCNError(f"--warmup must be an integer >= 0, got {warmup!r}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise FCNError(f"--runs must be an integer >= 1, got {runs!r}")
