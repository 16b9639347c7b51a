"""The torch.export-based ("dynamo") exporter: works for the VGG nets, not for FCN-AlexNet.

This is why the TorchScript exporter is the default (see fcn_deploy/export/torch_export.py).
"""
from __future__ import annotations

import onnx
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.export import export_model

from export_helpers import SAMPLE, SIZES, meta_for, registry_model


def test_dynamo_exporter_stays_dynamic_and_verifies(tmp_path):
    model = registry_model("fcn32s_vgg16")
    out = tmp_path / "m.onnx"
    report = export_model(model, meta_for(model), out, exporter="dynamo", outputs="both",
                          sample_shape=SAMPLE, verify_sizes=SIZES)
    assert report.verification.passed and report.exporter == "dynamo"
    graph = onnx.load(str(out))
    dims = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
            for o in graph.graph.output}
    assert dims == {"scores": ["batch", 5, "height", "width"],
                    "labels": ["batch", "height", "width"]}
    assert len(report.optimizations["depthwise_upsampling"]["rewritten"]) == 1
    assert report.optimizations["fold_crops"][0]["begin_offsets"] == [19, 19]


def test_dynamo_exporter_cannot_do_alexnet_and_says_so(tmp_path):
    model = registry_model("fcn_alexnet")
    with pytest.raises(FCNError, match=r"dynamo exporter cannot export fcn_alexnet.*use exporter "
                                       r"'legacy'"):
        export_model(model, meta_for(model), tmp_path / "m.onnx", exporter="dynamo",
                     sample_shape=SAMPLE)
    assert list(tmp_path.iterdir()) == []
