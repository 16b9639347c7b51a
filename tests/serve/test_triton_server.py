"""The triton backend against a real tritonserver (nvidia-pytriton's binary, Python backend).

The repository is written by fcn-triton --backend python (a model.py running the ONNX with ONNX
Runtime), the server runs from .venv-triton on free localhost ports, and every server started
here is stopped (its whole process group) when the module or test ends.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time

import numpy as np
import pytest

from fcn_deploy.cli.segment import main as segment_main
from fcn_deploy.errors import FCNError
from fcn_deploy.runtime import Segmenter, open_runner
from fcn_deploy.serve.local_server import LocalTritonServer
from fcn_deploy.serve.repository import TritonRepoOptions, write_triton_repository
from runtime_fixtures import make_tiny_onnx, random_image, random_inputs_for

pytestmark = pytest.mark.triton
SIZES = [(40, 52), (33, 47), (64, 64)]
#: a two-head net (SIFT Flow sem + geo) and a two-input one (NYUDv2 image + 1-channel depth)
MULTI_IO = ("siftflow_fcn16s", "nyud_fcn32s_color_d")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton")
    onnx_path = make_tiny_onnx(folder / "tiny.onnx", num_classes=5, seed=11)
    repo = folder / "repo"
    write_triton_repository(onnx_path, repo, TritonRepoOptions(
        name="tiny", backend="python", outputs="both", max_image=(64, 64), intra_op_threads=1))
    # A long queue delay and preferred size 4: four concurrent requests form one batch.
    write_triton_repository(onnx_path, repo, TritonRepoOptions(
        name="batched", backend="python", max_batch_size=4, preferred_batch_sizes=(4,),
        max_queue_delay_us=2_000_000, intra_op_threads=1))
    # max_batch_size 0: Triton does not batch; the batch dim is part of the dims.
    write_triton_repository(onnx_path, repo, TritonRepoOptions(
        name="unbatched", backend="python", max_batch_size=0, dynamic_batching=False,
        intra_op_threads=1))
    # The multi-IO nets (exported with torch, where it is installed) join the same server.
    multi = {}
    if importlib.util.find_spec("torch") is not None:
        from runtime_fixtures import make_multi_io_net

        for arch in MULTI_IO:
            multi[arch] = make_multi_io_net(folder, arch)[3]
            write_triton_repository(multi[arch], repo, TritonRepoOptions(
                name=arch, backend="python", outputs="both", intra_op_threads=1))
    return {"onnx": onnx_path, "repo": repo, "folder": folder, "multi": multi}


@pytest.fixture(scope="module")
def server(model_files, triton_python_env):
    with LocalTritonServer(repository=model_files["repo"], python_env=triton_python_env,
                           startup_timeout_s=90) as srv:
        yield srv


@pytest.fixture(scope="module")
def local(model_files):
    # One thread, as the served model runs it: the same ONNX Runtime kernels on the same CPU.
    with Segmenter.open(model_files["onnx"], backend="onnxruntime", intra_op_threads=1) as seg:
        yield seg


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_labels_equal_local_onnxruntime(server, local, protocol):
    url = (f"triton://{server.http_url}/tiny" if protocol == "http"
           else f"triton+grpc://{server.grpc_url}/tiny")
    with Segmenter.open(url, timeout_s=20) as seg:
        assert seg.backend == "triton"
        assert seg.meta.num_classes == 5 and seg.class_names == local.class_names
        assert seg.meta.mean == local.meta.mean and seg.palette == local.palette
        runner = seg.runner
        assert [(t.name, t.shape) for t in runner.inputs] == [("image", (None, 3, None, None))]
        assert [(t.name, t.shape, t.dtype) for t in runner.outputs] == [
            ("labels", (None, None, None), np.dtype(np.uint8)),
            ("scores", (None, 5, None, None), np.dtype(np.float32))]
        for i, (h, w) in enumerate(SIZES):
            image = random_image(h, w, seed=i)
            labels, scores = seg.predict(image, scores=True)
            ref_labels, ref_scores = local.predict(image, scores=True)
            assert len(np.unique(ref_labels)) >= 2
            np.testing.assert_array_equal(labels, ref_labels)
            np.testing.assert_array_equal(scores, ref_scores)  # same ORT, same graph, same input
        batch = [random_image(30, 30, seed=s) for s in range(3)]
        np.testing.assert_array_equal(seg.predict_batch(batch), local.predict_batch(batch))


@pytest.mark.parametrize("arch", MULTI_IO)
def test_multi_head_and_multi_input_nets_equal_local_onnxruntime(server, model_files, arch):
    """Every input sent by name, every head's labels and scores back: equal to the local
    ONNX Runtime Segmenter's on the same graph."""
    if arch not in model_files["multi"]:
        pytest.skip("exporting the multi-IO nets needs torch")
    onnx_path = model_files["multi"][arch]
    with Segmenter.open(onnx_path, backend="onnxruntime", intra_op_threads=1) as local, \
            Segmenter.open(f"triton://{server.http_url}/{arch}", timeout_s=20) as seg:
        assert seg.input_names == local.input_names and seg.head_names == local.head_names
        channels = {"image": 3, "depth": 1}
        assert [(t.name, t.shape) for t in seg.runner.inputs] == [
            (name, (None, channels[name], None, None)) for name in local.input_names]
        assert sorted(seg.runner.output_names) == sorted(local.runner.output_names)
        for i, (h, w) in enumerate([(96, 96), (80, 100)]):
            first, *others = random_inputs_for(local.meta, h, w, seed=11 + i).items()
            extra = dict(others)
            got = seg.predict(first[1], scores=True, **extra)
            want = local.predict(first[1], scores=True, **extra)
            if seg.multi_head:
                assert list(got) == list(want) == ["sem", "geo"]
                pairs = [(got[head], want[head]) for head in want]
            else:
                pairs = [(got, want)]
            for (labels, scores), (ref_labels, ref_scores) in pairs:
                assert labels.shape == (h, w) and len(np.unique(ref_labels)) >= 2
                np.testing.assert_array_equal(labels, ref_labels)
                np.testing.assert_array_equal(scores, ref_scores)
        # a batch of two: every input concatenated by the served model, every head split back
        pair = [random_inputs_for(local.meta, 72, 64, seed=s) for s in (3, 4)]
        first, *others = local.input_names
        kwargs = {name: [p[name] for p in pair] for name in others}
        got = seg.predict_batch([p[first] for p in pair], **kwargs)
        want = local.predict_batch([p[first] for p in pair], **kwargs)
        for labels, ref in ([(got[h], want[h]) for h in want] if seg.multi_head
                            else [(got, want)]):
            assert labels.shape == (2, 72, 64)
            np.testing.assert_array_equal(labels, ref)
        if len(others) == 1:  # sent past the client's checks, the server refuses unequal H, W
            x = {first: np.zeros((1, 3, 32, 32), np.float32),
                 others[0]: np.zeros((1, 1, 32, 40), np.float32)}
            with pytest.raises(FCNError, match=rf"could not run model '{arch}': .*input "
                                               r"'depth' has shape \[1, 1, 32, 40\]; the inputs of "
                                               r"one request must share N, H and W with 'image' "
                                               r"\[1, 3, 32, 32\]"):
                seg.runner._infer(x, ["labels"])
    # fcn-segment --ray's driver plans per-head files and other inputs from the served config
    from fcn_deploy.serve.ray_segment import read_model_meta

    served = read_model_meta(f"triton://{server.http_url}/{arch}")
    assert served.input_names == local.input_names
    assert [h.name for h in served.head_specs()] == [h.name for h in local.heads]


def test_model_without_triton_batching(server, local):
    with Segmenter.open(f"triton+grpc://{server.grpc_url}/unbatched", timeout_s=20) as seg:
        assert seg.runner.inputs[0].shape == (None, 3, None, None)
        assert seg.runner.batch_limit((5, 3, 20, 20)) is None
        batch = [random_image(26, 31, seed=s) for s in range(5)]
        np.testing.assert_array_equal(seg.predict_batch(batch), local.predict_batch(batch))


def test_dynamic_batching_of_concurrent_clients(server, local):
    url = f"triton://{server.http_url}/batched"
    seg = Segmenter.open(url, timeout_s=20)  # one runner shared by four threads
    images = [random_image(24, 28, seed=10 + i) for i in range(4)]
    results: list = [None] * 4
    start = threading.Barrier(4)

    def client(i: int) -> None:
        start.wait()
        results[i] = seg.predict(images[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    seg.close()
    for image, labels in zip(images, results):
        np.testing.assert_array_equal(labels, local.predict(image))
    with open_runner(url, timeout_s=20) as runner:
        (stats,) = runner.statistics()["model_stats"]
    assert int(stats["inference_count"]) == 4
    # The server ran the four requests as one batch of 4, in one execution of the model.
    assert int(stats["execution_count"]) == 1
    assert [(int(b["batch_size"]), int(b["compute_infer"]["count"]))
            for b in stats["batch_stats"]] == [(4, 1)]


def test_oversized_image_is_a_clean_error(server):
    with Segmenter.open(f"triton://{server.http_url}/tiny", timeout_s=20) as seg:
        with pytest.raises(FCNError, match=r"an image of 65x40 is larger than the server takes "
                                           r"\(64x64\)"):
            seg.predict(random_image(65, 40))
        # Sent anyway (past the client's check), the server's model refuses it the same way.
        x = np.zeros((1, 3, 80, 80), np.float32)
        with pytest.raises(FCNError, match=r"could not run model 'tiny': .*image of 80x80 is "
                                           r"larger than this model serves \(64x64\)"):
            seg.runner._infer({"image": x}, ["labels"])
        assert seg.predict(random_image(64, 64)).shape == (64, 64)  # the server is still fine


def test_unknown_model_and_bad_url(server):
    with pytest.raises(FCNError, match=r"could not read the model config of model 'nope'"):
        Segmenter.open(f"triton://{server.http_url}/nope", timeout_s=10)
    with pytest.raises(FCNError, match=r"is not a Triton model URL"):
        Segmenter.open("triton://hostonly")
    with pytest.raises(FCNError, match=r"no backend opens ftp:// URLs"):
        Segmenter.open("ftp://x/y")
    with pytest.raises(FCNError, match=r"--device cuda does not apply to a served model"):
        Segmenter.open(f"triton://{server.http_url}/tiny", device="cuda")
    with pytest.raises(FCNError, match=r"backend 'onnxruntime' cannot open triton://"):
        Segmenter.open(f"triton://{server.http_url}/tiny", backend="onnxruntime")


def test_fcn_segment_with_a_triton_url_matches_the_local_run(server, model_files, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    import cv2

    for i, (h, w) in enumerate(SIZES):
        cv2.imwrite(str(images / f"im{i}.png"), random_image(h, w, seed=20 + i))
    (images / "broken.png").write_bytes(b"not a png")
    rc_local = segment_main(["--engine", str(model_files["onnx"]), str(images),
                             "-o", str(tmp_path / "local"), "--overlay", "--threads", "1"])
    rc_remote = segment_main(["--engine", f"triton://{server.http_url}/tiny", str(images),
                              "-o", str(tmp_path / "remote"), "--overlay"])
    assert rc_local == rc_remote == 1  # the broken image, reported by both
    local_files = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert local_files == sorted(p.name for p in (tmp_path / "remote").iterdir())
    assert len(local_files) == 6
    for name in local_files:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()


def test_fcn_bench_concurrent_clients(server, tmp_path, capsys):
    from fcn_deploy.cli.bench import main as bench_main
    from fcn_deploy.bench.report import read_json

    url = f"triton://{server.http_url}/tiny"
    with open_runner(url) as runner:
        before = int(runner.statistics()["model_stats"][0]["inference_count"])
        rc = bench_main(["--engine", url, "--concurrency", "3", "--runs", "7", "--warmup", "1",
                         "--shape", "2x3x32x40", "-o", str(tmp_path), "--quiet"])
        # The server records a request's statistics after sending its response, so the last
        # request may not be counted yet when the client already has its answer: wait for it.
        deadline = time.monotonic() + 10
        while True:
            after = int(runner.statistics()["model_stats"][0]["inference_count"])
            if after - before >= (3 + 7) * 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert rc == 0 and "3 concurrent clients" in capsys.readouterr().out
    row, env = read_json(tmp_path / "bench_tiny_c3.json")
    assert row["kind"] == "concurrent" and row["backend"] == "triton"
    assert row["concurrency"] == 3 and row["requests"] == 7 and row["latency_n"] == 7
    assert row["shape"] == "2x3x32x40"
    assert row["throughput_ips"] == pytest.approx(7 * 2 / row["wall_s"])
    assert row["latency_min_ms"] <= row["latency_median_ms"] <= row["latency_max_ms"]
    assert env["kind"] == "environment"
    # every image the server saw: 3 clients x 1 warm-up request + 7 timed, 2 images each
    assert after - before == (3 + 7) * 2


def test_restart_hang_and_server_gone(model_files, triton_python_env, local):
    """Its own server: a restart on the same ports, a stopped (hung) server, then none at all."""
    image = random_image(32, 32, seed=5)
    srv = LocalTritonServer(repository=model_files["repo"], python_env=triton_python_env)
    try:
        srv.start()
        seg = Segmenter.open(f"triton://{srv.http_url}/tiny", timeout_s=3)
        grpc = Segmenter.open(f"triton+grpc://{srv.grpc_url}/tiny", timeout_s=3)
        np.testing.assert_array_equal(seg.predict(image), local.predict(image))
        ports = (srv.http_port, srv.grpc_port)
        srv.stop()
        srv = LocalTritonServer(repository=model_files["repo"], python_env=triton_python_env,
                                http_port=ports[0], grpc_port=ports[1])
        srv.start()
        # The runners opened before the restart carry on: their clients reconnect.
        np.testing.assert_array_equal(seg.predict(image), local.predict(image))
        np.testing.assert_array_equal(grpc.predict(image), local.predict(image))

        os.killpg(srv.process.pid, signal.SIGSTOP)  # alive but silent: only a timeout ends a call
        try:
            for s in (seg, grpc):
                t0 = time.monotonic()
                with pytest.raises(FCNError, match=r"could not run model 'tiny'"):
                    s.predict(image)
                assert time.monotonic() - t0 < 12  # bounded by timeout_s=3
        finally:
            os.killpg(srv.process.pid, signal.SIGCONT)
        srv.stop()
        for s in (seg, grpc):
            t0 = time.monotonic()
            with pytest.raises(FCNError, match=r"Triton server 127.0.0.1:\d+ could not run model"):
                s.predict(image)
            assert time.monotonic() - t0 < 12
        with pytest.raises(FCNError, match=r"could not read the model config of model 'tiny'"):
            Segmenter.open(f"triton://127.0.0.1:{ports[0]}/tiny", timeout_s=3)
        seg.close()
        grpc.close()
    finally:
        srv.stop()


def test_a_killed_parent_leaves_no_server(model_files, triton_python_env, tmp_path):
    """A test run killed outright (no fixture teardown) must not leave tritonserver running.
    (The killed process cannot remove its work folder: TMPDIR keeps it in tmp_path.)"""
    import subprocess
    import sys

    code = ("import os; from pathlib import Path; "
            "from fcn_deploy.serve.local_server import LocalTritonServer as S; "
            f"s = S(repository=Path({str(model_files['repo'])!r}), "
            f"python_env=Path({str(triton_python_env)!r})).start(); "
            "print(s.process.pid, flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True,
                         env={**os.environ, "TMPDIR": str(tmp_path)}).stdout
    group = int(out.split()[0])  # the server leads its own process group (server + stubs)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(group, signal.SIGKILL)
    pytest.fail("tritonserver outlived the process that started it")
