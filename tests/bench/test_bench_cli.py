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
