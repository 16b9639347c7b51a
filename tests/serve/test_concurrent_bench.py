"""fcn-bench --concurrency on a local file: N threads, one Segmenter each, counted requests."""
from __future__ import annotations

import pytest

from fcn_deploy.bench.concurrent import bench_concurrent
from fcn_deploy.bench.report import read_json
from fcn_deploy.cli.bench import main as bench_main
from fcn_deploy.errors import FCNError


def test_concurrent_local_file(tiny_onnx, tmp_path, capsys):
    rc = bench_main(["--engine", str(tiny_onnx), "--concurrency", "2", "--runs", "5",
                     "--warmup", "0", "--shape", "1x3x24x24", "--threads", "1",
                     "-o", str(tmp_path), "--quiet"])
    assert rc == 0
    assert "| 1x3x24x24 | 2 | 5 |" in capsys.readouterr().out
    row = read_json(tmp_path / "bench_tiny_c2.json")[0]
    assert (row["backend"], row["concurrency"], row["requests"]) == ("onnxruntime", 2, 5)
    assert row["throughput_ips"] == pytest.approx(5 / row["wall_s"])


def test_concurrent_errors(tiny_onnx, tmp_path):
    with pytest.raises(FCNError, match=r"--concurrency must be >= 1, got 0"):
        bench_concurrent(tiny_onnx, shape=(1, 3, 8, 8), concurrency=0, requests=1)
    with pytest.raises(FCNError, match=r"--runs must be an integer >= 1, got 0"):
        bench_concurrent(tiny_onnx, shape=(1, 3, 8, 8), concurrency=1, requests=0)
    with pytest.raises(FCNError, match=r"shape 1x2x8x8 must be Nx3xHxW"):
        bench_concurrent(tiny_onnx, shape=(1, 2, 8, 8), concurrency=2, requests=2, warmup=0)


def test_concurrency_0_is_refused_not_run_as_1(tiny_onnx, tmp_path, capsys):
    rc = bench_main(["--engine", str(tiny_onnx), "--concurrency", "0", "--runs", "2",
                     "--shape", "1x3x24x24", "-o", str(tmp_path), "--quiet"])
    assert rc == 2 and capsys.readouterr().err == "error: --concurrency must be >= 1, got 0\n"
    assert [p.name for p in tmp_path.iterdir()] == [tiny_onnx.name]  # no report


def test_more_clients_than_requests_is_refused_before_opening_them(tiny_onnx, monkeypatch):
    """--concurrency 100000 --runs 20 opened 100000 Segmenters (one model copy each)."""
    from fcn_deploy.runtime.segmenter import Segmenter

    def no_open(*a, **k):
        raise AssertionError("no Segmenter may be opened")

    monkeypatch.setattr(Segmenter, "open", no_open)
    with pytest.raises(FCNError, match=r"--concurrency 100000 is more than the 20 requests "
                                       r"\(--runs\): 99980 clients would open the model and "
                                       r"send nothing"):
        bench_concurrent(tiny_onnx, shape=(1, 3, 8, 8), concurrency=100000, requests=20)
