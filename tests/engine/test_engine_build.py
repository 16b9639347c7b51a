"""fcn-build and build_engine: everything checked before TensorRT, and the error without it."""
from __future__ import annotations

import importlib.util

import pytest

from fcn_deploy.cli.build import main
from fcn_deploy.engine.build import BuildOptions, build_engine, parse_size, prepare_build
from fcn_deploy.engine.profiles import Profile
from fcn_deploy.errors import FCNError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_parse_size():
    assert parse_size("4GiB") == 4 << 30
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("1.5g") == 3 << 29
    assert parse_size("1048576") == 1 << 20
    for bad in ("lots", "-1G", "4TB", "0"):
        with pytest.raises(FCNError, match=f"size '{bad}' is not understood"):
            parse_size(bad)


@pytest.mark.parametrize("options,message", [
    (BuildOptions(optimization_level=6), "builder optimization level must be 0..5, got 6"),
    (BuildOptions(workspace_bytes=0), "workspace limit must be a positive integer number of "
                                      "bytes, got 0"),
    (BuildOptions(hardware_compatibility="turing"), "hardware compatibility must be one of none, "
                                                    "ampere_plus, same_compute_capability"),
    (BuildOptions(exclude_lean_runtime=True), "exclude_lean_runtime needs version_compatible"),
    # Strings from a config file: named, not a TypeError from the comparison.
    (BuildOptions(optimization_level="3"), r"builder optimization level must be an integer "
                                           r"0\.\.5, got '3' \(str\)"),
    (BuildOptions(workspace_bytes="1G"), r"workspace limit must be a positive integer number of "
                                         r"bytes, got '1G' \(str\)"),
])
def test_build_options_are_validated(options, message):
    with pytest.raises(FCNError, match=message):
        options.validate()


def test_prepare_build_checks_the_graph(onnx_factory):
    prep = prepare_build(onnx_factory("ok.onnx"))
    assert prep.precision == "fp32" and prep.graph.output_names == ["scores", "labels"]
    assert prep.profiles == [Profile((1, 3, 32, 32), (1, 3, 500, 500), (1, 3, 1024, 1024))]
    with pytest.raises(FCNError, match="carries no fcn-deploy metadata .*export it with fcn-export"):
        prepare_build(onnx_factory("bare.onnx", with_meta=False))
    with pytest.raises(FCNError, match="the network input is 'input'; the runtime expects 'image'"):
        prepare_build(onnx_factory("named.onnx", input_name="input"))
    with pytest.raises(FCNError, match="dimension 2 of input 'image' is fixed at 16"):
        prepare_build(onnx_factory("static.onnx", static_shape=(1, 3, 16, 16)))
    fixed = BuildOptions(profiles=[Profile((1, 3, 16, 16), (1, 3, 16, 16), (1, 3, 16, 16))])
    assert prepare_build(onnx_factory("static2.onnx", static_shape=(1, 3, 16, 16)), fixed).profiles


def test_prepare_build_refuses_an_int64_to_uint8_cast(onnx_factory, tmp_path):
    """TensorRT casts to UINT8 only from FP32/FP16: labels = uint8(argmax) must pass through
    float (as fcn-export and the test graphs write it); a direct cast never reaches TensorRT."""
    import onnx

    model = onnx.load(str(onnx_factory("ok.onnx")))
    assert [n.op_type for n in model.graph.node][-3:] == ["ArgMax", "Cast", "Cast"]
    assert prepare_build(onnx_factory("ok2.onnx")).graph.unbuildable == []
    to_float, to_uint8 = model.graph.node[-2], model.graph.node[-1]
    to_uint8.input[0] = to_float.input[0]  # ArgMax (int64) straight to uint8
    model.graph.node.remove(to_float)
    bad = tmp_path / "direct.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(FCNError, match=r"direct.onnx: TensorRT would reject this graph: Cast "
                                       r"'labels' converts INT64 \(from ArgMax .*\) to UINT8; "
                                       r"TensorRT casts to UINT8 only from FP32/FP16"):
        prepare_build(bad)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed")
def test_build_without_tensorrt_says_what_to_install(tiny_onnx, tmp_path):
    messages = []
    with pytest.raises(FCNError, match=r"TensorRT is not available \(ModuleNotFoundError: .*\); "
                                       r"install TensorRT 10 or 11 and cuda-python"):
        build_engine(tiny_onnx, tmp_path / "m.plan", log=messages.append)
    assert messages[0].startswith("building a FP32 (")  # the CPU-side checks ran first
    assert not (tmp_path / "m.plan").exists() and not (tmp_path / "m.plan.json").exists()


def test_cli_check_prints_precision_and_profiles(tiny_onnx, capsys):
    rc = main([str(tiny_onnx), "--check", "--min", "1x3x64x64", "--opt", "1x3x128x128",
               "--max", "2x3x256x256", "--min", "1x3x16x16", "--opt", "1x3x32x32", "--max",
               "1x3x64x64"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "precision: FP32 (4 float32 initializers" in out
    assert ("profiles: #0: min 1x3x64x64, opt 1x3x128x128, max 2x3x256x256; "
            "#1: min 1x3x16x16, opt 1x3x32x32, max 1x3x64x64") in out
    assert "OK for fcn-build (outputs scores, labels)" in out


def test_cli_reports_user_errors_in_one_line(tiny_onnx, tmp_path, capsys):
    assert main([str(tiny_onnx), "--min", "1x3x64x64", "--opt", "1x3x32x32", "--max", "1x3x96x96"]) == 2
    assert "error: profile #0: dimension 2 needs min <= opt <= max" in capsys.readouterr().err
    assert main([str(tiny_onnx), "--workspace", "huge"]) == 2
    assert "error: size 'huge' is not understood" in capsys.readouterr().err
    assert main([str(tiny_onnx), "-o", str(tmp_path / "nope" / "m.plan")]) == 2
    assert "error: output folder" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed")
def test_cli_without_tensorrt_prints_precision_then_what_to_install(tiny_onnx, tmp_path, capsys):
    rc = main([str(tiny_onnx), "-o", str(tmp_path / "m.plan"), "--opt-level", "2",
               "--timing-cache", str(tmp_path / "timing.cache")])
    captured = capsys.readouterr()
    assert rc == 2
    assert "precision: FP32" in captured.out
    assert "error: TensorRT is not available" in captured.err
    assert "pip install 'fcn-deploy[tensorrt]'" in captured.err
    assert "Traceback" not in captured.err


def test_cli_refuses_a_plan_or_sidecar_over_an_input(tiny_onnx, tmp_path, capsys):
    """No TensorRT needed: the plan is checked before anything is built."""
    before = tiny_onnx.read_bytes()
    assert main([str(tiny_onnx), "-o", str(tiny_onnx), "--check"]) == 2
    assert capsys.readouterr().err == (
        f"error: fcn-build: plan {tiny_onnx} is also the ONNX model {tiny_onnx}: writing it "
        "would destroy that input; choose another output path\n")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache")
    assert main([str(tiny_onnx), "-o", str(cache), "--timing-cache", str(cache)]) == 2
    assert f"timing cache {cache} and plan {cache} are the same file" in capsys.readouterr().err
    # The cache is rewritten after the build: as the model (or its weights) it would replace it.
    assert main([str(tiny_onnx), "-o", str(tmp_path / "t.plan"), "--timing-cache",
                 str(tiny_onnx), "--check"]) == 2
    assert capsys.readouterr().err == (
        f"error: fcn-build: timing cache {tiny_onnx} is also the ONNX model {tiny_onnx}: writing "
        "it would destroy that input; choose another output path\n")
    weights = tiny_onnx.parent / (tiny_onnx.name + ".data")
    assert main([str(tiny_onnx), "-o", str(tmp_path / "t.plan"), "--timing-cache",
                 str(weights), "--check"]) == 2
    assert "is also the ONNX model's weights" in capsys.readouterr().err
    sidecar_clash = tmp_path / "m.plan"
    (tmp_path / "m.plan.json").symlink_to(tiny_onnx)
    assert main([str(tiny_onnx), "-o", str(sidecar_clash)]) == 2
    assert "sidecar" in capsys.readouterr().err
    assert tiny_onnx.read_bytes() == before


def test_build_engine_refuses_a_plan_over_its_onnx_before_needing_tensorrt(tiny_onnx):
    with pytest.raises(FCNError, match=r"build_engine: plan .*tiny\.onnx is also the ONNX model"):
        build_engine(tiny_onnx, tiny_onnx, BuildOptions())
    with pytest.raises(FCNError, match=r"build_engine: timing cache .*tiny\.onnx is also the "
                                       r"ONNX model"):
        build_engine(tiny_onnx, tiny_onnx.with_suffix(".plan"),
                     BuildOptions(timing_cache=tiny_onnx))
