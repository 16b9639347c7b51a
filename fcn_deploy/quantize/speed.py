"""INT8 vs FP32 speed on the CPU with ONNX Runtime: the pieces that do not time anything.

``prepare_pair`` builds a reference architecture with random weights (speed does not depend on
the values; the score layers get random weights too, so the INT8 scores' error against FP32 can
be measured), exports it and quantizes it on a few synthetic images; ``cpu_session`` opens a
graph the way the measurement does; ``optimized_op_counts`` shows what ONNX Runtime actually runs
after its graph optimizations (how many convolutions became integer QLinearConv, which stayed
float, how many Q/DQ remain), which is what explains the ratio.

``measure_speed`` is the measurement ``python -m fcn_deploy.cli.speed`` runs: each architecture's
FP32 graph and its INT8 graph (fast and exact int8 kernels) timed side by side with the one timer
(:mod:`fcn_deploy.timing`), plus the INT8 scores' error against FP32's. At the reference sizes
it is heavy (FCN-8s at 500x500 is ~181 GMAC per image); the tests run it on a tiny net.
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fcn_deploy.cpu import cpu_features
from fcn_deploy.datasets import SyntheticShapes, create_dataset
from fcn_deploy.export import export_model
from fcn_deploy.meta import read_onnx_meta
from fcn_deploy.ortsession import session_options
from fcn_deploy.preprocess import preprocess_input
from fcn_deploy.quantize.ptq import QuantizeConfig, quantize_onnx
from fcn_deploy.timing import TimingStats, summarize, time_interleaved_calls


@dataclass
class SpeedPair:
    arch: str
    fp32: Path
    int8: Path
    quantized_layers: int
    float_layers: list[str]


def prepare_pair(arch: str, work_dir: str | os.PathLike, *, width: float = 1.0,
                 num_classes: int = 21, calib_images: int = 4, calib_size: int = 96,
                 config: Any = None, seed: int = 0, progress: bool = False) -> SpeedPair:
    """Export ``arch`` with random weights to ``work_dir`` and quantize it; reuse files there."""
    import torch

    # lazy: fcn_deploy.models imports torch; timing existing graphs does not need it
    from fcn_deploy.models import create_model

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / f"{arch}_w{width:g}_fp32.onnx"
    int8 = work / f"{arch}_w{width:g}_int8.onnx"
    if not fp32.is_file():
        torch.manual_seed(seed)
        model = create_model(arch, num_classes=num_classes, width=width).eval()
        with torch.no_grad():  # score layers start at zero: random ones make scores to compare
            for name in model.score_layers:
                model.get_submodule(name).weight.normal_(0.0, 0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_model(model, None, fp32, sample_shape=(1, 3, 128, 128), verify=False,
                         progress=progress)
        del model
    data = SyntheticShapes(num_images=calib_images, seed=seed + 1, min_size=calib_size,
                           max_size=calib_size + 32)  # images only: their classes do not matter
    config = config or QuantizeConfig(progress=progress)
    result = quantize_onnx(fp32, int8, data, config=config)
    return SpeedPair(arch=arch, fp32=fp32, int8=int8, quantized_layers=len(result.quantized_nodes),
                     float_layers=list(result.excluded_nodes))


def cpu_session(path: str | os.PathLike, *, threads: int | None = None,
                optimized_path: str | os.PathLike | None = None, opt_level: str = "all",
                int8_kernels: str | None = None):
    """An ONNX Runtime CPU session with all graph optimizations (as the runtime opens it);
    ``int8_kernels`` auto/fast/exact as the runtime takes it (None = auto)."""
    import onnxruntime as ort

    opts = session_options(intra_op_threads=threads or None, graph_optimization_level=opt_level,
                           int8_kernels=int8_kernels)
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def optimized_op_counts(path: str | os.PathLike, *, threads: int | None = 1) -> Counter:
    """Op types of the graph ONNX Runtime runs after optimization (domain-qualified if not ai.onnx).

    Optimizations at the "all" level include layout changes that cannot be saved to ONNX, so the
    "extended" level is saved here (QDQ fusion into QLinearConv happens at that level already).
    """
    import onnx

    with tempfile.TemporaryDirectory(prefix="fcn-ortopt.") as tmp:
        out = Path(tmp) / "optimized.onnx"
        cpu_session(path, threads=threads, optimized_path=out, opt_level="extended")
        model = onnx.load(str(out), load_external_data=False)
    return Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                   for n in model.graph.node)


def profile_by_op(path: str | os.PathLike, x: np.ndarray, *, runs: int = 1,
                  threads: int | None = None) -> dict[str, float]:
    """Milliseconds per run spent in each op type (ONNX Runtime's profiler), largest first."""
    import json

    import onnxruntime as ort

    opts = session_options(intra_op_threads=threads or None)
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="fcn-ortprof.") as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        sess.run(None, {name: x})  # warm-up, excluded below
        for _ in range(runs):
            sess.run(None, {name: x})
        trace = json.loads(Path(sess.end_profiling()).read_text())
    runs_seen = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start_us = runs_seen[1]["ts"] if len(runs_seen) > 1 else None
    totals: Counter = Counter()
    for event in trace:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if start_us is not None and event["ts"] < start_us:
            continue
        totals[event.get("args", {}).get("op_name", "?")] += event["dur"] / 1e3 / runs
    return dict(totals.most_common())


def speed_input(size: int, *, seed: int = 0) -> np.ndarray:
    """A preprocessed-looking 1x3xSxS input (pixels minus a mean)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (1, 3, size, size)) - 117.0).astype(np.float32)


# -- the measurement (not used by tests) -----------------------------------------------------------
def relative_rms(got: np.ndarray, want: np.ndarray) -> float:
    """RMS of ``got - want`` over the RMS of ``want``: how far INT8 scores are from FP32's."""
    want = np.asarray(want, np.float64)
    return float(np.sqrt(np.mean((np.asarray(got, np.float64) - want) ** 2))
                 / max(np.sqrt(np.mean(want ** 2)), 1e-30))


def int8_score_errors(fp32: str | os.PathLike, int8: str | os.PathLike, dataset: Any, *,
                      threads: int | None = None, limit: int | None = None) -> dict[str, float]:
    """Relative RMS of an INT8 graph's scores against its FP32 graph's over a dataset's samples,
    with ONNX Runtime's fast int8 kernels, its exact U8U8 kernels, and without integer kernels
    (the Q/DQ graph evaluated in float: the reference the exact kernels should match). Every
    input of a multi-input net is fed from the sample and every head's scores count.
    ``dataset``: a create_dataset spec or a dataset object."""
    meta = read_onnx_meta(fp32)
    specs = meta.input_specs()
    outputs = [h.scores_output for h in meta.head_specs()]
    sessions = {"int8": cpu_session(int8, threads=threads, int8_kernels="fast"),
                "int8 exact": cpu_session(int8, threads=threads, int8_kernels="exact"),
                "reference": cpu_session(int8, threads=threads, opt_level="disable"),
                "fp32": cpu_session(fp32, threads=threads)}
    data = create_dataset(dataset) if isinstance(dataset, str) else dataset
    err = {k: 0.0 for k in sessions if k != "fp32"}
    total = 0.0
    for i in range(len(data) if limit is None else min(limit, len(data))):
        sample = data[i]
        feeds = {s.name: preprocess_input(s, sample.image if s.name == "image"
                                          else sample.inputs[s.name])[None] for s in specs}
        out = {k: [o.astype(np.float64) for o in s.run(outputs, feeds)]
               for k, s in sessions.items()}
        total += sum(float(np.sum(o ** 2)) for o in out["fp32"])
        for k in err:
            err[k] += sum(float(np.sum((a - b) ** 2)) for a, b in zip(out[k], out["fp32"]))
    return {k: float(np.sqrt(v / max(total, 1e-30))) for k, v in err.items()}


def time_sessions(sessions: dict[str, Any], x: np.ndarray, *, warmup: int, runs: int,
                  outputs: dict[str, np.ndarray] | None = None) -> dict[str, TimingStats]:
    """Time ONNX Runtime sessions on ``x`` side by side (:func:`fcn_deploy.timing.
    time_interleaved_calls`: run by run, so that load from other processes hits all alike).
    ``outputs`` (if given) receives each session's first output (of its last run)."""
    feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions.items()}
    got: dict[str, np.ndarray] = {} if outputs is None else outputs

    def call(name: str):
        def run() -> None:
            got[name] = sessions[name].run(None, feeds[name])[0]
        return run

    timed = time_interleaved_calls({name: call(name) for name in sessions}, warmup=warmup,
                                   runs=runs)
    return {name: summarize(samples) for name, (samples, _) in timed.items()}


@dataclass
class SpeedRow:
    """One architecture's result: timings of the FP32 graph and of the INT8 graph with ONNX
    Runtime's fast and exact int8 kernels, and the relative RMS of the INT8 scores against FP32's
    (keys ``int8``, ``int8 exact``, ``reference``: the Q/DQ graph evaluated in float)."""

    arch: str
    fp32: TimingStats
    int8: TimingStats
    int8_exact: TimingStats
    rms: dict[str, float]
    pair: SpeedPair

    @property
    def speedup(self) -> float:
        """INT8 (fast kernels) over FP32, median against median."""
        return self.fp32.median / self.int8.median

    @property
    def speedup_exact(self) -> float:
        return self.fp32.median / self.int8_exact.median


def measure_speed(archs: Sequence[str], *, size: int = 500, width: float = 1.0, runs: int = 5,
                  warmup: int = 1, threads: int | None = None,
                  work_dir: str | os.PathLike | None = None,
                  keep_float: Sequence[str] | None = None, profile: bool = False,
                  log: Callable[[str], None] = print) -> list[SpeedRow]:
    """Prepare each architecture's FP32/INT8 pair (:func:`prepare_pair`, random weights) and time
    the FP32 and INT8 sessions side by side on a ``size`` x ``size`` input; ``log`` receives a
    few lines per architecture as it goes (op counts, medians, errors; with ``profile``, the INT8
    time by op type). ``work_dir`` None: a temporary folder, removed when this returns or fails.
    """
    cpu = cpu_features()
    log(f"CPU: {cpu.name} ({cpu.describe_int8()}); int8 = ONNX Runtime's fast kernels, "
        "int8 exact = session.x64quantprecision=1 (U8U8)")
    x = speed_input(size)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fcn-speed.") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        for arch in archs:
            config = QuantizeConfig(progress=False, exclude_kinds=keep_float)
            t0 = time.perf_counter()
            pair = prepare_pair(arch, work, width=width, config=config)
            prep = time.perf_counter() - t0
            ops = optimized_op_counts(pair.int8)
            sessions = {"fp32": cpu_session(pair.fp32, threads=threads),
                        "int8": cpu_session(pair.int8, threads=threads, int8_kernels="fast"),
                        "int8 exact": cpu_session(pair.int8, threads=threads,
                                                  int8_kernels="exact")}
            outs: dict[str, np.ndarray] = {}
            stats = time_sessions(sessions, x, warmup=max(warmup, 1), runs=runs, outputs=outs)
            del sessions
            # the Q/DQ graph without integer kernels (evaluated in float): what exact kernels match
            reference = cpu_session(pair.int8, threads=threads, opt_level="disable").run(
                None, {"image": x})[0]
            rms = {k: relative_rms(outs[k], outs["fp32"]) for k in ("int8", "int8 exact")}
            rms["reference"] = relative_rms(reference, outs["fp32"])
            row = SpeedRow(arch, stats["fp32"], stats["int8"], stats["int8 exact"], rms, pair)
            rows.append(row)
            fp, q, qx = row.fp32, row.int8, row.int8_exact
            log(f"{arch} (width {width:g}) at {size}x{size}: prepared in {prep:.0f} s;"
                f" {pair.quantized_layers} conv layers INT8, float: {pair.float_layers}")
            log(f"  ORT runs: {dict(sorted(ops.items()))}")
            log(f"  fp32 median {fp.median:.0f} ms (min {fp.min:.0f}, cv {fp.cv:.3f}); "
                f"int8 median {q.median:.0f} ms (min {q.min:.0f}, cv {q.cv:.3f}); "
                f"INT8/FP32 speed-up {row.speedup:.2f}x over {runs} interleaved runs")
            log(f"  int8 exact median {qx.median:.0f} ms (min {qx.min:.0f}), speed-up "
                f"{row.speedup_exact:.2f}x; relative RMS of the scores vs FP32: "
                f"int8 {rms['int8']:.4f}, int8 exact {rms['int8 exact']:.4f}, Q/DQ float reference "
                f"{rms['reference']:.4f}")
            if profile:
                prof = profile_by_op(pair.int8, x, threads=threads)
                total = sum(prof.values())
                log("  INT8 time by op: " + ", ".join(
                    f"{op} {ms:.0f} ms ({100 * ms / total:.0f}%)" for op, ms in prof.items()
                    if ms >= 0.005 * total))
    return rows


def speed_table(rows: Sequence[SpeedRow]) -> str:
    """The Markdown table of :func:`measure_speed`'s rows (medians in ms, speed-ups, errors)."""
    lines = ["| model | FP32 median ms | INT8 median ms | speed-up | INT8 exact median ms | "
             "speed-up | rel. RMS vs FP32 (INT8 / exact / reference) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.arch} | {r.fp32.median:.0f} | {r.int8.median:.0f} | {r.speedup:.2f}x | "
                     f"{r.int8_exact.median:.0f} | {r.speedup_exact:.2f}x | {r.rms['int8']:.4f} / "
                     f"{r.rms['int8 exact']:.4f} / {r.rms['reference']:.4f} |")
    return "\n".join(lines)
