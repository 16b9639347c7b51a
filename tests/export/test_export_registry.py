"""Every registered architecture exports, stays dynamic, verifies, and carries its metadata."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from fcn_deploy.export import export_model, verify_onnx
from fcn_deploy.meta import read_onnx_meta
from fcn_deploy.models import list_models

from export_helpers import SAMPLE, SIZES, meta_for, random_feeds, registry_model, run_onnx


def _dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_and_verifies(name, tmp_path):
    model = registry_model(name)
    meta = meta_for(model)
    heads = meta.head_specs()
    out = tmp_path / f"{name}.onnx"
    report = export_model(model, meta, out, outputs="both", sample_shape=SAMPLE,
                          verify_sizes=SIZES)
    ver = report.verification
    assert ver.passed and ver.checker == "ok" and ver.interface == []
    # trace size, smaller (batch 2), larger; one row per head of a multi-head net
    assert [(c.shape, c.head) for c in ver.cases] == [
        (s, h.name if len(heads) > 1 else None) for s in SIZES for h in heads]
    assert all(c.max_ref > 0 and c.max_rel < 1e-4 for c in ver.cases)  # non-trivial scores

    graph = onnx.load(str(out))
    # one input per modality, named after it ("image"; "hha" for the HHA-only NYUD net; "image"
    # and "hha"/"depth" for the fusion nets), each with its own channels
    assert [(i.name, _dims(i)) for i in graph.graph.input] == [
        (n, ["batch", c, "height", "width"]) for n, c in model.input_channels.items()]
    # every head's scores, then every head's labels ("scores"/"labels" for one head)
    outs = {o.name: o for o in graph.graph.output}
    assert list(outs) == meta.output_names("both")
    for head in heads:
        assert _dims(outs[head.scores_output]) == ["batch", head.num_classes, "height", "width"]
        assert _dims(outs[head.labels_output]) == ["batch", "height", "width"]
        assert outs[head.labels_output].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    if len(heads) > 1:
        assert [h.scores_output for h in heads] == ["scores_sem", "scores_geo"]
        assert [h.num_classes for h in heads] == [5, 3]
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"Dropout", "BatchNormalization"}  # eval-mode graph
    assert graph.opset_import[0].version == 18
    deconvs = [n for n in graph.graph.node if n.op_type == "ConvTranspose"]
    assert len(report.optimizations["depthwise_upsampling"]["rewritten"]) == len(deconvs) >= 1
    assert sorted(a.i for n in deconvs for a in n.attribute if a.name == "group") == sorted(
        model.get_submodule(n).out_channels for n in model.upsample_layers)
    # the final crop after each head's last deconv (the late-fusion nets sum the streams'
    # scores before one upsampling)
    assert len(report.optimizations["fold_crops"]) == len(heads)
    assert report.node_counts["simplified"] < report.node_counts["exported"]

    # the metadata round-trips: what the runtime reads is the checkpoint's, with precision/outputs
    # and the measured tiling geometry added
    from fcn_deploy.models.analysis import tile_geometry

    back = read_onnx_meta(out)
    assert back == meta.replace(outputs="both", precision="fp32", extra=back.extra,
                                tiling=tile_geometry(model).to_dict())
    assert back.extra["export"]["opset"] == 18
    assert back.extra["export"]["optimizations"]["depthwise_upsampling"]["rewritten"]

    # labels outputs == argmax of the scores outputs, on a size not used before
    feeds = random_feeds(meta, (1, 3, 57, 70), seed=3)
    result = run_onnx(out, feeds)
    for head in heads:
        assert result[head.scores_output].shape == (1, head.num_classes, 57, 70)
        assert np.array_equal(result[head.labels_output],
                              result[head.scores_output].argmax(axis=1))


def test_optimizations_switch_off_and_change_nothing_numerically(tmp_path):
    model = registry_model("fcn8s_vgg16")
    meta = meta_for(model)
    plain = export_model(model, meta, tmp_path / "plain.onnx", simplify=False,
                         depthwise_upsampling=False, fold_crops=False, sample_shape=SAMPLE,
                         verify_sizes=SIZES[:1])
    opt = export_model(model, meta, tmp_path / "opt.onnx", sample_shape=SAMPLE,
                       verify_sizes=SIZES[:1])
    assert plain.optimizations == {"simplify": False, "depthwise_upsampling": None,
                                   "fold_crops": None}
    assert read_onnx_meta(tmp_path / "plain.onnx").extra["export"]["optimizations"][
        "depthwise_upsampling"] is None
    assert "simplified" not in plain.node_counts
    graph = onnx.load(str(tmp_path / "plain.onnx"))
    assert all(a.i == 1 for n in graph.graph.node if n.op_type == "ConvTranspose"
               for a in n.attribute if a.name == "group")
    assert opt.node_counts["final"] < plain.node_counts["final"]
    for shape in SIZES[1:]:
        x = np.random.default_rng(4).uniform(-100, 100, size=shape).astype(np.float32)
        a = run_onnx(tmp_path / "plain.onnx", x)["scores"]
        b = run_onnx(tmp_path / "opt.onnx", x)["scores"]
        assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()


def test_verify_onnx_on_its_own_reports_each_size(tmp_path):
    model = registry_model("fcn16s_vgg16")
    out = tmp_path / "m.onnx"
    export_model(model, meta_for(model), out, outputs="labels", sample_shape=SAMPLE, verify=False)
    report = verify_onnx(out, model, sizes=[(1, 3, 40, 40), (2, 3, 31, 45)])
    assert report.passed and report.outputs == ["labels"]
    assert [c.pixels for c in report.cases] == [1600, 2 * 31 * 45]
    assert report.cases[0].max_abs > 0  # labels-only graphs still get their scores checked
    table = report.table()
    assert "1x3x40x40" in table and "2x3x31x45" in table and "FAIL" not in table
