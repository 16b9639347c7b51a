"""The speed pieces: what ONNX Runtime runs for the default INT8 layout, and the side-by-side
timing of sessions (with the one timer, fcn_deploy.timing)."""
from __future__ import annotations

import numpy as np
import pytest

from fcn_deploy.quantize import QuantizeConfig, quantize_onnx
from fcn_deploy.quantize.speed import (cpu_session, measure_speed, optimized_op_counts,
                                     profile_by_op, speed_input, speed_table, time_sessions)
from fcn_deploy.timing import TimingStats


def test_every_quantized_conv_runs_as_an_integer_kernel(tiny_onnx, tmp_path, calib_images,
                                                        capsys):
    out = tmp_path / "int8.onnx"
    quantize_onnx(tiny_onnx, out, calib_images, config=QuantizeConfig(progress=False))
    ops = optimized_op_counts(out)
    # conv1..conv4 (the first one included: its Shape consumer reads the float image) on
    # ONNX Runtime's integer kernels; the two score layers and both upsampling layers float
    assert ops["QLinearConv"] == 4
    assert ops["Conv"] == 2 and ops["ConvTranspose"] == 2
    assert optimized_op_counts(tiny_onnx)["QLinearConv"] == 0
    prof = profile_by_op(out, speed_input(40), runs=1, threads=1)
    assert "QLinearConv" in prof and all(ms >= 0 for ms in prof.values())
    # the command (fcn_deploy/cli/speed.py) on the same pair: scores of both graphs compared
    from fcn_deploy.cli.speed import main

    assert main(["--compare", str(tiny_onnx), str(out), "--dataset", "synthetic:2",
                 "--threads", "1"]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{out} vs {tiny_onnx} on synthetic:2, ")
    assert "relative RMS of the scores: fast kernels " in line and "Q/DQ float reference" in line


def test_sessions_are_timed_side_by_side_with_the_one_timer(tiny_onnx):
    x = speed_input(40)
    sessions = {"a": cpu_session(tiny_onnx, threads=1), "b": cpu_session(tiny_onnx, threads=1)}
    outs: dict = {}
    stats = time_sessions(sessions, x, warmup=1, runs=3, outputs=outs)
    assert set(stats) == {"a", "b"} and all(isinstance(s, TimingStats) for s in stats.values())
    assert stats["a"].n == stats["b"].n == 3 and 0 <= stats["a"].min <= stats["a"].median
    want = sessions["a"].run(None, {"image": x})[0]
    assert outs["a"].shape == want.shape and np.array_equal(outs["a"], want)


def test_measure_speed_times_a_tiny_pair_and_the_command_prints_its_table(tmp_path, capsys):
    from fcn_deploy.cli.speed import main

    lines: list[str] = []
    rows = measure_speed(["fcn32s_vgg16"], size=48, width=0.0625, runs=2, threads=1,
                         work_dir=tmp_path, log=lines.append)
    (row,) = rows
    assert row.arch == "fcn32s_vgg16" and row.pair.int8.is_file()
    assert row.fp32.n == row.int8.n == row.int8_exact.n == 2
    assert row.speedup == row.fp32.median / row.int8.median
    # the Q/DQ graph in float is what the integer kernels compute: all three errors agree
    assert set(row.rms) == {"int8", "int8 exact", "reference"}
    assert row.rms["int8 exact"] == pytest.approx(row.rms["reference"], rel=1e-3, abs=1e-4)
    assert lines[0].startswith("CPU: ") and lines[1].startswith("fcn32s_vgg16 (width 0.0625) at 48x48")
    table = speed_table(rows).splitlines()
    assert table[0].startswith("| model | FP32 median ms") and table[2].startswith("| fcn32s_vgg16 |")
    # the command: the same measurement (graphs reused from the work folder), then the table
    assert main(["--arch", "fcn32s_vgg16", "--size", "48", "--width", "0.0625", "--runs", "1",
                 "--threads", "1", "--work-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("| fcn32s_vgg16 | ") and out[-1].count("|") == 8
