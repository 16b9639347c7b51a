"""fcn-quantize under hostile conditions: output over the input, a graph with no Conv, calibration
caches (reused only for the same graph and settings, reported as such; corrupt ones refused), and
SIGTERM mid-calibration leaving no file behind."""
from __future__ import annotations

import json
import os

import onnx
import pytest
from onnx import TensorProto, helper

from fcn_deploy.cli.quantize import main
from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta, read_onnx_meta, write_onnx_meta
from fcn_deploy.quantize.ptq import QuantizeConfig, quantize_onnx


def test_output_over_the_input_is_refused(tiny_onnx, tmp_path, capsys):
    before = tiny_onnx.read_bytes()
    link = tmp_path / "alias.onnx"
    link.symlink_to(tiny_onnx)
    assert main([str(tiny_onnx), "-o", str(link), "--calib", "synthetic:2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: fcn-quantize: output {link} (which resolves to {tiny_onnx}) "
                          f"is also the FP32 model {tiny_onnx}")
    cache = tmp_path / "cache.json"
    assert main([str(tiny_onnx), "-o", str(cache), "--calib", "synthetic:2",
                 "--calibration-cache", str(cache), "--quiet"]) == 2
    assert "is also the calibration cache" in capsys.readouterr().err
    assert tiny_onnx.read_bytes() == before


def test_a_graph_without_conv_is_a_clean_error(tmp_path, capsys):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["scores"])], "noconv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3, "h", "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    write_onnx_meta(model, ModelMeta.default("relu", 3))
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    assert main([str(path), "-o", str(tmp_path / "q.onnx"), "--calib", "synthetic:2",
                 "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: {path} has no Conv layer, so there is nothing to "
                                       "quantize; expected an FCN graph from fcn-export\n")


def test_calibration_cache_is_reused_only_for_the_same_graph_and_settings(
        tiny_onnx, trained_tiny, tmp_path, capsys):
    cache = tmp_path / "ranges.json"
    common = ["--calib", "synthetic:3", "--seed", "1", "--calibration-cache", str(cache), "--quiet"]
    assert main([str(tiny_onnx), "-o", str(tmp_path / "a.onnx"), *common]) == 0
    assert "percentile calibration on 3 images" in capsys.readouterr().out
    stored = json.loads(cache.read_text())
    assert stored["format"] == "fcn-deploy calibration cache"
    assert stored["key"]["method"] == "percentile" and stored["key"]["num_images"] == 3

    # a hit: same graph, settings and calibration source; it says so, and gives the same graph
    assert main([str(tiny_onnx), "-o", str(tmp_path / "b.onnx"), *common]) == 0
    out = capsys.readouterr().out
    assert (f"percentile ranges from the calibration cache {cache} (made on the same 3 --calib "
            "images; no calibration run)") in out
    assert onnx.load(str(tmp_path / "a.onnx")).graph == onnx.load(str(tmp_path / "b.onnx")).graph
    assert read_onnx_meta(tmp_path / "b.onnx").extra["calibration"]["from_cache"] is True

    # other settings, another graph: reported, recalibrated, and the cache replaced
    assert main([str(tiny_onnx), "-o", str(tmp_path / "c.onnx"), "--percentile", "99.9",
                 *common]) == 0
    captured = capsys.readouterr()
    assert (f"warning: calibration cache {cache} was made for other settings: percentile "
            "(99.99, now 99.9). Recalibrating, and the cache will be replaced") in captured.err
    assert "percentile calibration on 3 images" in captured.out
    assert json.loads(cache.read_text())["key"]["percentile"] == 99.9
    assert main([str(trained_tiny), "-o", str(tmp_path / "d.onnx"), "--percentile", "99.9",
                 *common]) == 0
    assert "was made for other settings: model (another graph)" in capsys.readouterr().err


@pytest.mark.parametrize("content, why", [
    ('{"format": "fcn-deploy calibration cache", "version": 1, "key": {"mo', "is not readable JSON"),
    ("", "is not readable JSON"),
    ('{"conv1_out": [0.0, 1.0]}', "was not written by fcn-quantize"),
    ('{"format": "fcn-deploy calibration cache", "version": 1}', "is incomplete"),
])
def test_corrupt_or_foreign_cache_is_an_error_and_is_kept(tiny_onnx, tmp_path, content, why):
    cache = tmp_path / "ranges.json"
    cache.write_text(content)
    config = QuantizeConfig(progress=False, calibration_cache=str(cache))
    with pytest.raises(FCNError, match=rf"calibration cache {cache} {why}"):
        quantize_onnx(tiny_onnx, tmp_path / "q.onnx", "synthetic:2", config=config)
    assert cache.read_text() == content and not (tmp_path / "q.onnx").exists()


def test_sigterm_during_calibration_leaves_no_file_anywhere(tiny_onnx, tmp_path):
    from process_helpers import leftovers, terminate_mid_run

    out_dir, tmpdir = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmpdir.mkdir()
    rc, err = terminate_mid_run(
        "fcn_deploy.cli.quantize", [tiny_onnx, "-o", out_dir / "q.onnx", "--calib",
                                    "synthetic:400", "--quiet"],
        ready=lambda: bool(os.listdir(out_dir)), settle=0.3, tmpdir=tmpdir)  # in calibration
    assert rc == 143, err
    assert err.rstrip().endswith("terminated") and "Traceback" not in err
    assert os.listdir(out_dir) == []
    assert leftovers(tmpdir) == []


def test_cache_in_a_missing_folder_fails_before_calibrating(tiny_onnx, tmp_path, capsys):
    cache = tmp_path / "nodir" / "ranges.json"
    assert main([str(tiny_onnx), "-o", str(tmp_path / "q.onnx"), "--calib", "synthetic:2",
                 "--calibration-cache", str(cache), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: calibration cache folder {cache.parent} does not "
                                       "exist; create it first\n")
    assert not (tmp_path / "q.onnx").exists()


def test_output_over_the_models_external_weights_is_refused(tiny_onnx, tmp_path, capsys):
    data = tiny_onnx.parent / (tiny_onnx.name + ".data")
    assert main([str(tiny_onnx), "-o", str(data), "--calib", "synthetic:2", "--quiet"]) == 2
    assert f"is also the FP32 model's weights {data}" in capsys.readouterr().err
    assert not data.exists()
