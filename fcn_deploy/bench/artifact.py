"""Benchmark one artifact (model.pt, .onnx or .plan) at one or more input shapes.

Warm-up runs first (untimed), then ``runs`` separate timed runs of the whole pipeline; every run
records its stages (see :mod:`fcn_deploy.bench.pipeline`), so the end-to-end and the
compute-alone statistics come from the same runs. Input images are random uint8 (seeded): the
weights and the pixels do not change the arithmetic an FCN does, so timings hold for any image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fcn_deploy.bench.flops import MacCount, artifact_macs
from fcn_deploy.bench.peak import PeakResult, measure_peak
from fcn_deploy.bench.pipeline import STAGES, StagePipeline, pipeline_for_runner
from fcn_deploy.bench.report import Column, environment, markdown_table
from fcn_deploy.errors import FCNError
from fcn_deploy.ortsession import cap_threads
from fcn_deploy.runtime import open_runner
from fcn_deploy.runtime.registry import default_backend, int8_kernel_options, thread_options
from fcn_deploy.timing import TimingStats, check_counts, summarize, time_interleaved_calls

DEFAULT_SHAPE = (1, 3, 500, 500)


@dataclass
class BenchConfig:
    """What to time and how. None means the default.

    ``shapes``: NCHW input shapes (default 1x3x500x500); ``runs``: timed runs per shape (20, as
    the paper averaged 20 trials); ``warmup``: untimed runs first; ``threads``: CPU threads for
    the backend (None = its default); ``output``: "labels" or "scores" (None = labels when the
    graph has them); ``peak``: also measure the machine's FP32 matrix-product peak;
    ``int8_kernels``: ONNX Runtime's CPU int8 kernels, auto/fast/exact (None = auto; see
    :mod:`fcn_deploy.cpu`); ``backend_options``: passed to ``open_runner`` as is.
    """

    shapes: Sequence[Sequence[int]] | None = None
    warmup: int = 2
    runs: int = 20
    threads: int | None = None
    backend: str | None = None
    device: str | None = None
    output: str | None = None
    peak: bool = False
    seed: int = 0
    progress: bool = True
    int8_kernels: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_counts(warmup=self.warmup, runs=self.runs)
        shapes = [tuple(int(d) for d in s) for s in (self.shapes or [DEFAULT_SHAPE])]
        for s in shapes:
            if len(s) != 4 or s[1] != 3 or min(s) < 1:
                raise FCNError(f"shape {'x'.join(map(str, s))} must be Nx3xHxW with positive "
                               "sizes (e.g. 1x3x500x500)")
        self.shapes = shapes
        if self.threads is not None and self.threads < 1:
            raise FCNError(f"--threads must be >= 1, got {self.threads}")
        self.threads = cap_threads(self.threads)  # reports show the threads actually used


@dataclass
class ShapeResult:
    """Timings of one shape: end to end, compute alone, per-stage means, FLOP rate."""

    shape: tuple[int, int, int, int]
    end_to_end: TimingStats
    compute: TimingStats
    stage_means_ms: dict[str, float]
    macs: MacCount | None
    cpu_per_wall: float | None = None
    peak_gflops: float | None = None

    @property
    def compute_gflops(self) -> float | None:
        """Achieved FLOP rate of the compute stage (2 x MACs / mean compute time)."""
        if self.macs is None or self.compute.mean <= 0:
            return None
        return 2 * self.macs.total / (self.compute.mean * 1e-3) / 1e9

    @property
    def conv_gflops(self) -> float | None:
        """Convolution FLOPs (upsampling excluded) over the whole compute time: a lower bound."""
        if self.macs is None or self.compute.mean <= 0:
            return None
        return 2 * self.macs.conv / (self.compute.mean * 1e-3) / 1e9

    def flat(self) -> dict[str, Any]:
        n, c, h, w = self.shape
        out: dict[str, Any] = {"shape": f"{n}x{c}x{h}x{w}", "batch": n, "height": h, "width": w}
        out.update(self.end_to_end.flat("e2e"))
        out.update(self.compute.flat("compute"))
        for stage in STAGES:  # "compute_mean_ms" is the compute statistics' own mean
            if stage != "compute":
                out[f"{stage}_mean_ms"] = self.stage_means_ms.get(stage)
        out["cpu_per_wall"] = self.cpu_per_wall
        if self.macs is not None:
            out.update(gmacs=self.macs.total / 1e9, conv_gmacs=self.macs.conv / 1e9,
                       deconv_gmacs=self.macs.deconv / 1e9, mac_source=self.macs.source,
                       compute_gflops=self.compute_gflops)
        else:
            out.update(gmacs=None, conv_gmacs=None, deconv_gmacs=None,
                       mac_source="unknown (no graph or architecture to count)",
                       compute_gflops=None)
        if self.peak_gflops:
            gf = self.compute_gflops
            out["peak_gflops"] = self.peak_gflops
            out["fraction_of_peak"] = gf / self.peak_gflops if gf is not None else None
        return out


@dataclass
class ArtifactBenchmark:
    """Everything ``bench_artifact`` measured for one artifact."""

    path: Path
    backend: str
    compute_mode: str
    output: str
    precision: str
    arch: str
    threads: int | None
    warmup: int
    runs: int
    results: list[ShapeResult]
    peak: PeakResult | None
    environment: dict[str, Any]
    int8_kernels: str | None = None  # the CPU's int8 path, for INT8 graphs on ONNX Runtime

    def records(self) -> list[dict[str, Any]]:
        """Flat records: one "timing" per shape, then "peak" (if measured), "environment"."""
        base = {"kind": "timing", "artifact": str(self.path), "arch": self.arch,
                "backend": self.backend, "precision": self.precision, "output": self.output,
                "compute_mode": self.compute_mode, "threads": self.threads,
                "int8_kernels": self.int8_kernels, "warmup": self.warmup, "runs": self.runs}
        rows = [{**base, **r.flat()} for r in self.results]
        if self.peak is not None:
            rows.append({"kind": "peak", **self.peak.flat()})
        rows.append(self.environment)
        return rows

    def markdown(self) -> str:
        env = self.environment
        lines = [f"# fcn-bench: {self.path.name}", "",
                 f"{self.arch}, {self.precision}, backend {self.backend} ({self.compute_mode}), "
                 f"output {self.output}, threads {self.threads or 'default'}; {self.warmup} "
                 f"warm-up + {self.runs} timed runs per shape; {env.get('cpu')} "
                 f"({env.get('cpu_count')} cores), {env.get('timestamp')}."
                 + (f" {self.int8_kernels}." if self.int8_kernels else ""), "",
                 markdown_table([r.flat() for r in self.results], TIMING_COLUMNS), "",
                 "Times in ms. e2e = preprocess + copy in + compute + copy out + argmax; "
                 "compute = the network alone. GFLOP/s = 2 x MACs / mean compute time "
                 f"({self.results[0].macs.source if self.results[0].macs else 'MACs unknown'}). "
                 "CPU/wall = process CPU seconds per wall second while timing (well below the "
                 "thread count: other processes took the cores and the times are inflated)."]
        if self.peak is not None:
            lines += ["", f"Measured FP32 peak (best large matrix product at the same thread "
                          f"count): {self.peak.peak_gflops:.1f} GFLOP/s ({self.peak.peak_method})."]
        return "\n".join(lines) + "\n"


def _fmt(spec: str) -> Callable[[Any], str]:
    return lambda v: format(v, spec)


def _timing_columns():
    cols = [Column("shape", "shape")]
    for key, head in (("e2e", "e2e"), ("compute", "compute")):
        cols += [Column(f"{key}_min_ms", f"{head} min", _fmt(".1f")),
                 Column(f"{key}_median_ms", f"{head} median", _fmt(".1f")),
                 Column(f"{key}_mean_ms", f"{head} mean", _fmt(".1f")),
                 Column(f"{key}_p90_ms", f"{head} p90", _fmt(".1f")),
                 Column(f"{key}_p99_ms", f"{head} p99", _fmt(".1f")),
                 Column(f"{key}_max_ms", f"{head} max", _fmt(".1f")),
                 Column(f"{key}_cv", f"{head} CV", _fmt(".1%")),
                 Column(f"{key}_throughput_ips", f"{head} img/s", _fmt(".2f"))]
    cols += [Column("gmacs", "GMAC", _fmt(".2f")),
             Column("compute_gflops", "GFLOP/s", _fmt(".1f")),
             Column("fraction_of_peak", "of peak", _fmt(".0%")),
             Column("cpu_per_wall", "CPU/wall", _fmt(".2f"))]
    return cols


TIMING_COLUMNS = _timing_columns()


def random_images(shape: Sequence[int], *, seed: int = 0) -> np.ndarray:
    """N x H x W x 3 uint8 images (what an application hands the Segmenter)."""
    n, _, h, w = shape
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def random_inputs(specs: Sequence[Any], shape: Sequence[int], *,
                  seed: int = 0) -> np.ndarray | dict[str, np.ndarray]:
    """Random data for every input of a net (``meta.input_specs()``) at ``shape``'s N, H, W, as
    the datasets hold it: images uint8 N x H x W x C, depth uint16 N x H x W in millimetres
    (0.5..10 m). A single-input net gets :func:`random_images` itself."""
    if len(specs) == 1:
        return random_images(shape, seed=seed)
    n, _, h, w = shape
    out = {}
    for k, spec in enumerate(specs):
        rng = np.random.default_rng([seed, k])
        if spec.encoding == "log_depth":
            out[spec.name] = rng.integers(500, 10000, size=(n, h, w), dtype=np.uint16)
        else:
            out[spec.name] = rng.integers(0, 256, size=(n, h, w, spec.channels), dtype=np.uint8)
    return out


def segmenter_inputs(seg: Any, shape: Sequence[int], *,
                     seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`random_inputs` for a Segmenter's ``predict_batch(first, **others)``: the first
    input's batch and {name: batch} of the others (empty for a single-input net)."""
    data = random_inputs(seg.input_specs, shape, seed=seed)
    if not isinstance(data, dict):
        return data, {}
    first, *others = seg.input_names
    return data[first], {name: data[name] for name in others}


@dataclass
class PipelineTiming:
    """What :func:`time_pipeline` measured. ``cpu_per_wall``: process CPU seconds per wall
    second over the timed runs (about the thread count when the process had the cores to
    itself; much less means other processes took them, and the times are inflated)."""

    e2e: TimingStats
    compute: TimingStats
    stage_means_ms: dict[str, float]
    cpu_per_wall: float


def time_pipeline(pipeline: StagePipeline, shape: Sequence[int], *, warmup: int, runs: int,
                  seed: int = 0, progress: bool = False, label: str = "") -> PipelineTiming:
    """Warm up, then time ``runs`` runs of the whole pipeline on random images of ``shape``."""
    return time_interleaved({label or "run": pipeline}, shape, warmup=warmup, runs=runs,
                            seed=seed, progress=progress, label=label)[label or "run"]


def time_interleaved(pipelines: Mapping[str, StagePipeline], shape: Sequence[int], *,
                     warmup: int, runs: int, seed: int = 0, progress: bool = False,
                     label: str = "", settle_s: float | None = None
                     ) -> dict[str, PipelineTiming]:
    """Time several pipelines on the same images, **interleaved**: every pipeline warms up, then
    each round runs each pipeline once. A change in machine load during the measurement then
    slows all of them alike, so their ratios stay fair ("measured side by side").

    ``settle_s`` (default 0.02 s with several pipelines, 0 with one): an untimed pause before
    each timed run, so the previous pipeline's thread pool (OpenMP threads spin for a while
    after a parallel region) has gone idle and does not take a core from the next one."""
    check_counts(warmup=warmup, runs=runs)
    if not pipelines:
        raise ValueError("no pipelines to time")
    n, _, h, w = shape
    names = list(pipelines)
    inputs = {name: random_inputs(pipelines[name].inputs, shape, seed=seed) for name in names}
    # every call's stage times (warm-ups first); the timer measures wall and CPU around the call
    stages: dict[str, list[dict[str, float]]] = {k: [] for k in names}
    labels: dict[str, np.ndarray] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=(warmup + runs) * len(names), desc=label or "x".join(map(str, shape)),
                   unit="run", leave=False, dynamic_ncols=True)

    def call(name: str) -> Callable[[], None]:
        def run() -> None:
            labels[name], times = pipelines[name].run(inputs[name])
            stages[name].append(times)
            if bar is not None:
                prefix = f"{name}: " if len(names) > 1 else ""
                if len(stages[name]) <= warmup:
                    bar.set_postfix_str(f"warm-up {name}" if len(names) > 1 else "warm-up")
                else:
                    totals = [sum(t.values()) for t in stages[name][warmup:]]
                    bar.set_postfix_str(f"{prefix}last {totals[-1] * 1e3:.1f} ms, mean "
                                        f"{np.mean(totals) * 1e3:.1f} ms")
                bar.update(1)
        return run

    if settle_s is None:
        settle_s = 0.02 if len(names) > 1 else 0.0
    try:
        timed = time_interleaved_calls({name: call(name) for name in names}, warmup=warmup,
                                       runs=runs, settle_s=settle_s)
    finally:
        if bar is not None:
            bar.close()
    out = {}
    for name in names:
        got = labels[name]
        if tuple(got.shape) != (n, h, w):
            raise FCNError(f"the network returned labels of shape {tuple(got.shape)} for input "
                           f"{'x'.join(map(str, shape))}; expected {(n, h, w)}")
        runs_stages = stages[name][warmup:]
        means = {s: sum(t.get(s, 0.0) for t in runs_stages) / runs * 1e3 for s in STAGES}
        walls, cpu = timed[name]
        out[name] = PipelineTiming(summarize([sum(t.values()) for t in runs_stages], items=n),
                                   summarize([t["compute"] for t in runs_stages], items=n),
                                   means, cpu / max(sum(walls), 1e-9))
    return out


def _runner_options(backend: str, config: BenchConfig) -> dict[str, Any]:
    options = dict(config.backend_options)
    if config.device is not None:
        options.setdefault("device", config.device)
    for key, value in thread_options(backend, config.threads).items():
        options.setdefault(key, value)
    for key, value in int8_kernel_options(backend, config.int8_kernels).items():
        options.setdefault(key, value)
    return options


def bench_artifact(path: str | os.PathLike, config: BenchConfig | None = None) -> ArtifactBenchmark:
    """Time ``path`` at every shape of ``config``; optionally measure the machine's FP32 peak."""
    config = config or BenchConfig()
    path = Path(path)
    backend = config.backend or default_backend(path)
    peak = None
    if config.peak:  # before the runner exists: its thread pool must not compete with the product
        peak = measure_peak(threads=config.threads, repeats=5)
    runner = open_runner(path, backend=backend, **_runner_options(backend, config))
    try:
        pipeline = pipeline_for_runner(runner, output=config.output)
        meta = runner.meta
        kernels = getattr(runner, "int8_kernels", None)
        int8_path = kernels.describe() if kernels is not None and meta.precision == "int8" else None
        model = getattr(runner, "model", None) if backend == "torch" else None
        results = []
        for shape in config.shapes:
            t = time_pipeline(
                pipeline, shape, warmup=config.warmup, runs=config.runs, seed=config.seed,
                progress=config.progress, label=f"{path.name} {'x'.join(map(str, shape))}")
            macs = artifact_macs(path, shape, meta=meta, model=model)
            results.append(ShapeResult(shape=tuple(shape), end_to_end=t.e2e, compute=t.compute,
                                       stage_means_ms=t.stage_means_ms, macs=macs,
                                       cpu_per_wall=t.cpu_per_wall))
    finally:
        runner.close()
        del runner
    if peak is not None:  # and after it is gone; the better sample counts
        import gc

        gc.collect()
        peak = peak.merge(measure_peak(threads=config.threads, repeats=5))
        for r in results:
            r.peak_gflops = peak.peak_gflops
    return ArtifactBenchmark(
        path=path, backend=backend, compute_mode=pipeline.compute_mode, output=pipeline.output,
        precision=meta.precision, arch=meta.arch, threads=config.threads, warmup=config.warmup,
        runs=config.runs, results=results, peak=peak,
        environment=environment(threads=config.threads), int8_kernels=int8_path)
