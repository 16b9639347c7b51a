"""fcn-bench on multi-input and multi-head nets: every input synthesized at the benchmarked size
and bound in the stage split, every head fetched; labels checked against the Segmenter's."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.bench.artifact import BenchConfig, bench_artifact, random_inputs, segmenter_inputs
from fcn_deploy.bench.pipeline import STAGES, OrtPipeline, TorchPipeline, pipeline_for_runner
from fcn_deploy.runtime import Segmenter, open_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from runtime_fixtures import make_multi_io_net  # noqa: E402

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench_multi_io")
    return {arch: make_multi_io_net(folder, arch)
            for arch in ("nyud_fcn32s_color_d", "siftflow_fcn16s")}


def test_random_inputs_cover_every_input_at_the_shape(nets):
    meta = nets["nyud_fcn32s_color_d"][1]
    data = random_inputs(meta.input_specs(), (2, 3, 30, 40), seed=1)
    assert sorted(data) == ["depth", "image"]
    assert data["image"].shape == (2, 30, 40, 3) and data["image"].dtype == np.uint8
    assert data["depth"].shape == (2, 30, 40) and data["depth"].dtype == np.uint16
    assert 500 <= data["depth"].min() and data["depth"].max() < 10000  # millimetres
    one = random_inputs(meta.replace(inputs=[]).input_specs(), (2, 3, 30, 40), seed=1)
    assert isinstance(one, np.ndarray) and one.shape == (2, 30, 40, 3)


@pytest.mark.parametrize("arch", ["nyud_fcn32s_color_d", "siftflow_fcn16s"])
def test_stage_pipelines_give_the_segmenters_labels(arch, nets):
    _, meta, pt, onnx_path = nets[arch]
    data = random_inputs(meta.input_specs(), (2, 3, 40, 56), seed=4)
    with open_runner(onnx_path) as runner:
        pipe = pipeline_for_runner(runner)
        assert isinstance(pipe, OrtPipeline) and pipe.output == "labels"
        assert pipe.fetch == meta.output_names("labels")
        labels, times = pipe.run(data)
        assert set(times) == set(STAGES) and times["argmax"] == 0.0
        scores_pipe = pipeline_for_runner(runner, output="scores")
        host_labels, times = scores_pipe.run(data)
        assert times["argmax"] > 0.0
        seg = Segmenter(runner)
        images, others = segmenter_inputs(seg, (2, 3, 40, 56), seed=4)  # the same data
        want = seg.predict_batch(images, tile=0, **others)
    want = want[seg.head_names[0]] if seg.multi_head else want  # a run returns the first head's
    np.testing.assert_array_equal(labels, want)
    np.testing.assert_array_equal(host_labels, want)
    with open_runner(pt) as runner:
        pipe = pipeline_for_runner(runner)
        assert isinstance(pipe, TorchPipeline)
        torch_labels, _ = pipe.run(data)
    assert torch_labels.shape == want.shape and np.mean(torch_labels == want) > 0.99


def test_bench_artifact_and_the_cli_on_a_two_input_graph(nets, tmp_path, capsys):
    from fcn_deploy.bench.flops import onnx_macs
    from fcn_deploy.cli.bench import main

    _, _, _, onnx_path = nets["nyud_fcn32s_color_d"]
    result = bench_artifact(onnx_path, BenchConfig(shapes=[(2, 3, 48, 64)], warmup=1, runs=2,
                                                   threads=1, progress=False))
    row = result.records()[0]
    assert row["shape"] == "2x3x48x64" and row["e2e_n"] == row["compute_n"] == 2
    assert row["mac_source"] == "onnx graph (shape inference)"
    macs = onnx_macs(onnx_path, (2, 3, 48, 64))
    assert row["gmacs"] == pytest.approx(macs.total / 1e9)
    # conv1_1 sees the 4-channel (image + depth) input, padded by 100: 2 x 4 (64 / 16) output
    # channels x 246 x 262 pixels x 4 x 3 x 3 (a depth input of unknown size would count zero)
    assert next(iter(macs.by_node.values())) == 2 * 4 * 246 * 262 * 4 * 9
    assert main(["--engine", str(onnx_path), "--shape", "1x3x40x48", "--runs", "1",
                 "--warmup", "0", "--threads", "1", "-o", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "bench_nyud_fcn32s_color_d.json").is_file()
    assert "| 1x3x40x48 |" in capsys.readouterr().out
