"""fcn-quantize: the command writes a checked INT8 graph, and bad inputs exit 2 with a message."""
from __future__ import annotations

import onnx

from fcn_deploy.cli.quantize import main
from fcn_deploy.meta import read_onnx_meta
from fcn_deploy.quantize import check_trt_qdq


def test_quantize_command(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "int8.onnx"
    rc = main([str(tiny_onnx), "-o", str(out), "--calib", "synthetic", "--num-images", "3",
               "--method", "entropy", "--exclude", "conv1", "--seed", "4", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: 3 conv layers in INT8, float: /score_fr/Conv, /score_pool1/Conv, " \
           "/upscore2/ConvTranspose, /upscore/ConvTranspose, /conv1/Conv; entropy calibration " \
           "on 3 images" in text
    assert text.rstrip().endswith("TensorRT Q/DQ rules: ok")
    assert check_trt_qdq(out) == []
    calib = read_onnx_meta(out).extra["calibration"]
    assert (calib["method"], calib["num_images"], calib["excluded_names"]) == ("entropy", 3, ["conv1"])


def test_keep_float_with_no_kind_quantizes_everything(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "all.onnx"
    assert main([str(tiny_onnx), "-o", str(out), "--calib", "synthetic:2", "--keep-float",
                 "--quiet"]) == 0
    assert "8 conv layers in INT8, float: none" in capsys.readouterr().out
    assert sum(n.op_type == "ConvTranspose" for n in onnx.load(str(out)).graph.node) == 2


def test_bad_inputs_exit_2_with_a_message(tiny_onnx, tmp_path, capsys):
    missing_dir = tmp_path / "nodir" / "x.onnx"
    assert main([str(tiny_onnx), "-o", str(missing_dir), "--calib", "synthetic:2", "--quiet"]) == 2
    assert "error: output folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tiny_onnx), "-o", str(tmp_path / "o.onnx"), "--calib",
                 str(tmp_path / "empty"), "--quiet"]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()


def test_missing_metadata_is_a_printed_warning(tiny_onnx, tmp_path, capsys):
    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    assert main([str(tmp_path / "bare.onnx"), "-o", str(tmp_path / "q.onnx"), "--calib",
                 "synthetic:2", "--quiet"]) == 0
    assert "warning: " in capsys.readouterr().err
