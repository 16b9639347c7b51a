"""Timing one artifact over the runner contract: stages, statistics, outputs, reports."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fcn_deploy.bench.artifact import BenchConfig, bench_artifact, random_images, time_pipeline
from fcn_deploy.bench.pipeline import STAGES, OrtPipeline, TorchPipeline, pipeline_for_runner
from fcn_deploy.errors import FCNError


def _ordered(record, prefix):
    keys = [f"{prefix}_{k}_ms" for k in ("min", "median", "p90", "p99", "max")]
    values = [record[k] for k in keys]
    assert values == sorted(values), (prefix, values)
    assert record[f"{prefix}_min_ms"] <= record[f"{prefix}_mean_ms"] <= record[f"{prefix}_max_ms"]


def test_onnx_artifact_at_two_shapes(tiny_artifacts):
    config = BenchConfig(shapes=[(1, 3, 64, 64), (2, 3, 48, 80)], warmup=1, runs=4, threads=1,
                         progress=False)
    result = bench_artifact(tiny_artifacts["both"], config)
    assert result.backend == "onnxruntime" and result.output == "labels"
    assert result.compute_mode.startswith("onnxruntime run_with_iobinding")
    rows = result.records()
    timing = [r for r in rows if r["kind"] == "timing"]
    assert [r["shape"] for r in timing] == ["1x3x64x64", "2x3x48x80"]
    assert rows[-1]["kind"] == "environment"
    for r in timing:
        _ordered(r, "e2e")
        _ordered(r, "compute")
        assert r["e2e_n"] == r["compute_n"] == 4
        assert r["compute_mean_ms"] <= r["e2e_mean_ms"]
        stages = sum(r[f"{s}_mean_ms"] for s in STAGES)
        assert stages == pytest.approx(r["e2e_mean_ms"], rel=1e-9)
        assert r["argmax_mean_ms"] == 0.0  # labels come out of the graph
        assert r["e2e_throughput_ips"] == pytest.approx(r["batch"] * 1e3 / r["e2e_mean_ms"])
        assert r["compute_gflops"] == pytest.approx(2 * r["gmacs"] / r["compute_mean_ms"] * 1e3)
        assert all(not isinstance(v, (dict, list)) for v in r.values())
        assert 0 < r["cpu_per_wall"] < 64  # process CPU seconds per wall second while timing
    # the MACs are the graph's own count at each shape
    from fcn_deploy.bench.flops import onnx_macs

    assert timing[1]["gmacs"] == pytest.approx(
        onnx_macs(tiny_artifacts["both"], (2, 3, 48, 80)).total / 1e9)
    md = result.markdown()
    assert "| 1x3x64x64 |" in md and "compute p99" in md and "e2e CV" in md


def test_scores_output_adds_the_host_argmax(tiny_artifacts):
    result = bench_artifact(tiny_artifacts["both"], BenchConfig(
        shapes=[(1, 3, 64, 64)], warmup=0, runs=2, output="scores", progress=False))
    row = result.records()[0]
    assert row["output"] == "scores" and row["argmax_mean_ms"] > 0


def test_checkpoint_runs_eager_torch(tiny_artifacts):
    result = bench_artifact(tiny_artifacts["pt"], BenchConfig(
        shapes=[(1, 3, 64, 64)], warmup=1, runs=2, threads=1, progress=False))
    row = result.records()[0]
    assert result.backend == "torch" and row["compute_mode"] == "torch eager forward"
    assert row["mac_source"].startswith("pytorch model")
    _ordered(row, "compute")


def test_pipelines_agree_on_labels(tiny_model, tiny_artifacts):
    """ONNX Runtime (labels in the graph) and PyTorch (host argmax) give the same label map."""
    from fcn_deploy.runtime import open_runner

    images = random_images((2, 3, 40, 56), seed=4)
    with open_runner(tiny_artifacts["both"]) as runner:
        ort = pipeline_for_runner(runner)
        assert isinstance(ort, OrtPipeline)
        labels_ort, times = ort.run(images)
    assert set(times) == set(STAGES)
    labels_torch, _ = TorchPipeline(tiny_model, mean=runner.meta.mean).run(images)
    assert labels_ort.shape == (2, 40, 56) and labels_ort.dtype == np.uint8
    assert np.mean(labels_ort == labels_torch) > 0.99


def test_wrong_label_shape_is_reported(tiny_artifacts):
    class Cropping(TorchPipeline):
        def run_tensor(self, x, times):
            return super().run_tensor(x, times)[:, :, :-1]

    import torch

    model = torch.nn.Conv2d(3, 4, 1)
    with pytest.raises(FCNError, match=r"labels of shape \(1, 31, 32\).*expected \(1, 32, 32\)"):
        time_pipeline(Cropping(model, mean=[0, 0, 0]), (1, 3, 32, 32), warmup=0, runs=1)


def test_config_errors_name_the_option(tiny_artifacts):
    with pytest.raises(FCNError, match="must be Nx3xHxW"):
        BenchConfig(shapes=[(1, 1, 64, 64)])
    with pytest.raises(FCNError, match="--runs must be an integer >= 1"):
        BenchConfig(runs=0)
    with pytest.raises(FCNError, match="--threads must be >= 1"):
        BenchConfig(threads=0)
    with pytest.raises(FCNError, match="no 'labels' output"):
        bench_artifact(tiny_artifacts["scores"], BenchConfig(
            shapes=[(1, 3, 32, 32)], runs=1, output="labels", progress=False))
    with pytest.raises(FCNError, match="does not exist"):
        bench_artifact(tiny_artifacts["both"].with_name("missing.onnx"), BenchConfig(runs=1))
