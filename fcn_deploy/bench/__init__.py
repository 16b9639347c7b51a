"""Benchmarking: timing statistics, staged runner timing, FLOP counts and rates, the machine's
FP32 peak, ONNX Runtime operator profiles and reports (``fcn-bench``).

Importing this package is cheap (numpy only); ONNX Runtime, PyTorch and matplotlib are imported
when a benchmark that needs them runs. The paper reproduction lives in
:mod:`fcn_deploy.bench.paper`.
"""
from fcn_deploy.bench.artifact import (ArtifactBenchmark, BenchConfig, PipelineTiming, ShapeResult,
                                       bench_artifact, random_images, time_pipeline)
from fcn_deploy.bench.flops import MacCount, artifact_macs, onnx_macs, torch_macs
from fcn_deploy.bench.peak import PeakResult, measure_peak
from fcn_deploy.bench.pipeline import (STAGES, OrtPipeline, RunnerPipeline, StagePipeline,
                                       TorchPipeline, pipeline_for_runner)
from fcn_deploy.bench.profile import OpProfile, ort_profile
from fcn_deploy.bench.report import read_json, write_csv, write_json
from fcn_deploy.timing import STAT_FIELDS, TimingStats, summarize, time_runs

__all__ = [
    "ArtifactBenchmark", "BenchConfig", "MacCount", "OpProfile", "OrtPipeline", "PeakResult",
    "PipelineTiming", "RunnerPipeline", "STAGES", "STAT_FIELDS", "ShapeResult", "StagePipeline",
    "TimingStats",
    "TorchPipeline", "artifact_macs", "bench_artifact", "measure_peak", "onnx_macs",
    "ort_profile", "pipeline_for_runner", "random_images", "read_json", "summarize",
    "time_pipeline", "time_runs", "torch_macs", "write_csv", "write_json",
]
