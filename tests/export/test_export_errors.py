"""Bad input gives a clear FCNError and never a partial .onnx; external data works."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fcn_deploy.errors import FCNError
from fcn_deploy.export import export_checkpoint, export_model
from fcn_deploy.meta import ModelMeta, read_onnx_meta

from export_helpers import SAMPLE, SIZES, TinyFCN, run_onnx


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FCNError, match=r"checkpoint .*nope\.pt does not exist"):
        export_checkpoint(tmp_path / "nope.pt", tmp_path / "m.onnx")
    assert _files(tmp_path) == []


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04not a checkpoint at all" * 10)
    with pytest.raises(FCNError, match=r"bad\.pt is not a readable fcn-deploy checkpoint"):
        export_checkpoint(bad, tmp_path / "m.onnx")
    assert _files(tmp_path) == ["bad.pt"]


def test_unknown_checkpoint_format(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(FCNError, match="not an fcn-deploy checkpoint"):
        export_checkpoint(other, tmp_path / "m.onnx")
    assert _files(tmp_path) == ["other.pt"]


def test_output_folder_missing(checkpoint, tmp_path):
    with pytest.raises(FCNError, match=r"output folder .*missing does not exist"):
        export_checkpoint(checkpoint, tmp_path / "missing" / "m.onnx")


@pytest.mark.parametrize("opset", [16, 21, 99])
def test_opset_out_of_range(tiny, tmp_path, opset):
    with pytest.raises(FCNError, match=rf"opset {opset} is out of range: expected 17\.\.20"):
        export_model(tiny, ModelMeta.default("tiny_fcn", 5), tmp_path / "m.onnx", opset=opset)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("option, message", [
    ({"outputs": "probabilities"}, "outputs must be one of scores, labels, both"),
    ({"precision": "int8"}, "INT8 graphs come from fcn-quantize"),
    ({"exporter": "onnxscript"}, "exporter must be one of legacy, dynamo"),
    ({"sample_shape": (1, 1, 32, 32)}, "must be N x 3 x H x W"),
    # refused before exporting (a negative tolerance failed every size after the work)
    ({"atol": -1.0}, r"atol must be a finite number >= 0, got -1.0"),
    ({"rtol": float("nan")}, r"rtol must be a finite number >= 0, got nan"),
])
def test_bad_options(tiny, tmp_path, option, message):
    with pytest.raises(FCNError, match=message):
        export_model(tiny, ModelMeta.default("tiny_fcn", 5), tmp_path / "m.onnx", **option)


def test_metadata_class_count_must_match_the_model(tiny, tmp_path):
    with pytest.raises(FCNError, match=r"expected N x 7 x H x W"):
        export_model(tiny, ModelMeta.default("tiny_fcn", 7), tmp_path / "m.onnx",
                     sample_shape=SAMPLE)
    assert _files(tmp_path) == []


def test_failed_verification_leaves_nothing_and_keeps_the_old_file(tmp_path):
    torch.manual_seed(0)
    broken = TinyFCN(bake_in_size=True).eval()  # the crop sizes are frozen at the trace size
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(FCNError, match=r"verification of the exported graph failed") as err:
        export_model(broken, ModelMeta.default("tiny_fcn", 5), out, sample_shape=SAMPLE,
                     verify_sizes=SIZES)
    assert "FAIL" in str(err.value) and "1x3x48x64" in str(err.value)  # the table is in it
    assert out.read_bytes() == b"previous export"
    assert _files(tmp_path) == ["m.onnx"]


def test_external_data_next_to_the_graph(tiny, tmp_path):
    out = tmp_path / "m.onnx"
    report = export_model(tiny, ModelMeta.default("tiny_fcn", 5), out, external_data=True,
                          sample_shape=SAMPLE, verify_sizes=SIZES[:2])
    assert report.external_data and report.verification.passed
    assert _files(tmp_path) == ["m.onnx", "m.onnx.data"]
    assert (tmp_path / "m.onnx.data").stat().st_size > out.stat().st_size
    assert read_onnx_meta(out).arch == "tiny_fcn"
    x = np.zeros((1, 3, 20, 30), np.float32)
    assert run_onnx(out, x)["scores"].shape == (1, 5, 20, 30)
    # exporting again inline removes the weight file that no longer belongs to the graph
    export_model(tiny, ModelMeta.default("tiny_fcn", 5), out, sample_shape=SAMPLE, verify=False)
    assert _files(tmp_path) == ["m.onnx"]
