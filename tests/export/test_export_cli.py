"""The fcn-export command: prints the verification table, exits 2 on user errors."""
from __future__ import annotations

import onnx

from fcn_deploy.cli.export import main
from fcn_deploy.meta import read_onnx_meta

SMALL = ["--sample-shape", "1x3x48x64", "--verify-shape", "1x3x48x64",
         "--verify-shape", "2x3x35x41", "--verify-shape", "1x3x83x99", "--quiet"]


def test_cli_exports_labels_and_prints_the_table(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main([str(checkpoint), "-o", str(out), "--outputs", "labels", *SMALL]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "outputs labels" in text and "opset 18" in text
    assert "onnx.checker full_check ok" in text
    for shape in ("1x3x48x64", "2x3x35x41", "1x3x83x99"):
        assert shape in text
    assert text.count(" ok\n") + text.rstrip().endswith(" ok") >= 3 and "FAIL" not in text
    assert "nodes: exported" in text and "-> simplified" in text
    meta = read_onnx_meta(out)
    assert meta.outputs == "labels" and meta.arch == "fcn32s_vgg16" and meta.num_classes == 7
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["labels"]


def test_cli_switches_record_what_was_applied(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    rc = main([str(checkpoint), "-o", str(out), "--no-depthwise-upsampling", "--no-crop-folding",
               "--no-verify", "--opset", "17", *SMALL])
    assert rc == 0
    assert "depthwise upsampling: off; crop folding: off" in capsys.readouterr().out
    extra = read_onnx_meta(out).extra["export"]
    assert extra["opset"] == 17 and extra["optimizations"]["fold_crops"] is None


def test_cli_fp16_with_eval_dataset(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.fp16.onnx"
    rc = main([str(checkpoint), "-o", str(out), "--precision", "fp16", "--eval-dataset",
               "synthetic:2", *SMALL])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fp16 vs fp32 on 2 images" in text and "label agreement" in text and "mean IU" in text


def test_cli_user_errors_exit_2_without_traceback(checkpoint, tmp_path, capsys):
    assert main([str(tmp_path / "none.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and "Traceback" not in err
    assert main([str(checkpoint), "-o", str(tmp_path / "m.onnx"), "--opset", "12"]) == 2
    assert "opset 12 is out of range" in capsys.readouterr().err
    assert main([str(checkpoint), "-o", str(tmp_path / "m.onnx"), "--eval-dataset",
                 "synthetic:2"]) == 2
    assert "use it with precision fp16" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fcn32s.pt"]
