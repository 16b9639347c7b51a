"""fcn-bench for one artifact: reports written, user errors as one line with exit status 2."""
from __future__ import annotations

import json

import pytest

from fcn_deploy.cli.bench import main


def test_one_artifact_writes_json_and_markdown(tiny_artifacts, tmp_path, capsys):
    out = tmp_path / "reports"
    rc = main(["--engine", str(tiny_artifacts["both"]), "--runs", "3", "--warmup", "1",
               "--shape", "1x3x64x64", "--shape", "1x3x32x48", "--threads", "1",
               "--output-dir", str(out), "--quiet"])
    assert rc == 0
    records = json.loads((out / "bench_tiny_both.json").read_text())
    timing = [r for r in records if r["kind"] == "timing"]
    assert [r["shape"] for r in timing] == ["1x3x64x64", "1x3x32x48"]
    assert all(r["runs"] == 3 and r["threads"] == 1 and r["backend"] == "onnxruntime"
               for r in timing)
    md = (out / "bench_tiny_both.md").read_text()
    assert md.startswith("# fcn-bench: tiny_both.onnx") and "| 1x3x32x48 |" in md
    assert "| 1x3x64x64 |" in capsys.readouterr().out


def test_demo_mode_defaults_to_500px(tiny_artifacts, tmp_path):
    rc = main(["--engine", str(tiny_artifacts["scores"]), "--runs", "2", "--warmup", "0",
               "--output-dir", str(tmp_path), "--name", "demo", "-q"])
    assert rc == 0
    (row,) = [r for r in json.loads((tmp_path / "demo.json").read_text()) if r["kind"] == "timing"]
    assert row["shape"] == "1x3x500x500" and row["output"] == "scores"


def test_user_errors_are_one_line(tiny_artifacts, tmp_path, capsys):
    assert main(["--engine", str(tmp_path / "none.onnx"), "-q"]) == 2
    assert "error: model file" in capsys.readouterr().err
    assert main(["--engine", str(tiny_artifacts["both"]), "--runs", "0", "-q"]) == 2
    assert "--runs must be an integer >= 1" in capsys.readouterr().err
    assert main(["--engine", str(tiny_artifacts["both"]), "--backend", "torch", "-q"]) == 2
    assert "backend 'torch' cannot open" in capsys.readouterr().err


def test_options_of_the_other_mode_are_refused(tiny_artifacts, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--engine", str(tiny_artifacts["both"]), "--quick"])
    assert exc.value.code == 2 and "--quick applies to --paper only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--paper", "--shape", "1x3x64x64"])
    assert "--shape applies to --engine only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--engine", "a.onnx", "--paper"])


def test_int8_graphs_report_the_cpus_int8_path(tiny_artifacts, tmp_path, capsys):
    """On a CPU reported as lacking VNNI, fcn-bench runs an INT8 graph on exact U8U8 kernels and
    says so (report and JSON); --int8-kernels fast overrides it, with the warning; FP32 graphs
    carry no int8 line, and the environment record names the CPU's int8 support."""
    quantize = pytest.importorskip("fcn_deploy.quantize")
    import numpy as np

    from fcn_deploy.cpu import CpuFeatures, assume_cpu
    from fcn_deploy.meta import read_onnx_meta

    meta = read_onnx_meta(tiny_artifacts["scores"])
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    int8 = tmp_path / "tiny_int8.onnx"
    quantize.quantize_onnx(tiny_artifacts["scores"], int8,
                           quantize.CalibrationReader([image], mean=meta.mean, progress=False),
                           config=quantize.QuantizeConfig(progress=False))
    common = ["--runs", "1", "--warmup", "0", "--shape", "1x3x32x32", "--threads", "1", "-q",
              "--output-dir", str(tmp_path)]
    with assume_cpu(CpuFeatures(machine="x86_64", flags=frozenset({"avx2", "fma"}))):
        assert main(["--engine", str(int8), "--name", "auto", *common]) == 0
        assert main(["--engine", str(int8), "--name", "fast", "--int8-kernels", "fast",
                     *common]) == 0
        assert main(["--engine", str(tiny_artifacts["scores"]), "--name", "fp32", *common]) == 0
    printed = capsys.readouterr().out
    assert "int8: exact U8U8 kernels (no VNNI)." in printed
    records = {name: json.loads((tmp_path / f"{name}.json").read_text())
               for name in ("auto", "fast", "fp32")}
    timing = {name: next(r for r in rows if r["kind"] == "timing")
              for name, rows in records.items()}
    assert timing["auto"]["int8_kernels"] == "int8: exact U8U8 kernels (no VNNI)"
    assert timing["fast"]["int8_kernels"].startswith("int8: fast U8S8 kernels, may saturate")
    assert timing["fp32"]["int8_kernels"] is None
    env = next(r for r in records["fp32"] if r["kind"] == "environment")
    assert env["cpu_int8"] == "no VNNI"
    assert "may saturate" in (tmp_path / "fast.md").read_text()


def test_an_onnxruntime_run_error_is_one_line_naming_the_shape(tmp_path, capsys):
    """A graph with a static 16x16 input timed at 1x3x32x32: ONNX Runtime refuses the run."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import numpy as np
    from fcn_deploy.meta import ModelMeta, write_onnx_meta

    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["scores"])], "static",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 16, 16])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    write_onnx_meta(model, ModelMeta.default("static", 2))
    path = tmp_path / "static.onnx"
    onnx.save(model, str(path))
    rc = main(["--engine", str(path), "--shape", "1x3x32x32", "--runs", "1", "--warmup", "0",
               "--output-dir", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("error: ONNX Runtime failed on input shape (1, 3, 32, 32): ")
    assert list((tmp_path / "r").iterdir()) == []


def test_a_pytorch_allocation_failure_is_one_line(tiny_artifacts, tmp_path, capsys, monkeypatch):
    from fcn_deploy.models.checkpoint import load_model

    model, _ = load_model(tiny_artifacts["pt"], map_location="cpu")

    def out_of_memory(self, x):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
                           "memory: you tried to allocate 123456789012 bytes.\nmore lines")

    monkeypatch.setattr(type(model), "forward", out_of_memory)
    rc = main(["--engine", str(tiny_artifacts["pt"]), "--shape", "1x3x32x32", "--runs", "1",
               "--warmup", "0", "--output-dir", str(tmp_path / "r"), "-q"])
    assert rc == 2
    assert capsys.readouterr().err == (
        "error: PyTorch failed on input shape (1, 3, 32, 32): [enforce fail at alloc_cpu.cpp:117] "
        "DefaultCPUAllocator: not enough memory: you tried to allocate 123456789012 bytes.\n")


def test_report_folder_under_a_file_is_refused(tiny_artifacts, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["--engine", str(tiny_artifacts["both"]), "--output-dir",
                 str(tmp_path / "f" / "r"), "-q"]) == 2
    assert capsys.readouterr().err == (f"error: output folder {tmp_path / 'f' / 'r'} cannot be created: "
                                       f"{tmp_path / 'f'} is a file, not a folder\n")
