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


def test_cli_refuses_to_write_over_the_checkpoint_before_loading_it(checkpoint, tmp_path, capsys):
    before = checkpoint.read_bytes()
    assert main([str(checkpoint), "-o", str(checkpoint), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: fcn-export: output {checkpoint} is also the checkpoint {checkpoint}: "
                   "writing it would destroy that input; choose another output path\n")
    link = tmp_path / "link.onnx"
    link.symlink_to(checkpoint)
    assert main([str(checkpoint), "-o", str(link), *SMALL]) == 2
    assert "which resolves to" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before
    (tmp_path / "f").write_text("x")
    assert main([str(checkpoint), "-o", str(tmp_path / "f" / "m.onnx"), *SMALL]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_sigterm_during_export_leaves_no_file_anywhere(checkpoint, tmp_path):
    """A real SIGTERM once the export's scratch folder exists: exit 143, nothing left next to
    the output (no staging folder, no hidden .onnx) nor in the temporary folder."""
    import os

    from process_helpers import leftovers, terminate_mid_run

    out_dir, tmpdir = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmpdir.mkdir()
    rc, err = terminate_mid_run("fcn_deploy.cli.export",
                                [checkpoint, "-o", out_dir / "m.onnx", *SMALL],
                                ready=lambda: bool(os.listdir(out_dir)), tmpdir=tmpdir)
    assert rc == 143, err
    assert err.rstrip().endswith("terminated") and "Traceback" not in err
    assert os.listdir(out_dir) == []
    assert leftovers(tmpdir) == []
