"""ExportOptions: export_model's options as one object, keywords applied on top."""
from __future__ import annotations

import onnx
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.export import ExportOptions, export_model
from fcn_deploy.meta import ModelMeta


def test_unknown_option_is_named_before_any_work(tiny, tmp_path):
    with pytest.raises(FCNError, match=r"unknown export option\(s\) opsett; expected some of "
                                       r"atol, depthwise_upsampling, .*, opset, outputs"):
        export_model(tiny, None, tmp_path / "m.onnx", opsett=18)
    assert list(tmp_path.iterdir()) == []


def test_keywords_override_the_options_object(tiny, tmp_path):
    options = ExportOptions(opset=99, outputs="labels", verify=False, exporter="legacy")
    with pytest.raises(FCNError, match=r"opset 99 is out of range"):
        export_model(tiny, ModelMeta.default("tiny_fcn", 5), tmp_path / "m.onnx", options=options)
    out = tmp_path / "m.onnx"
    report = export_model(tiny, ModelMeta.default("tiny_fcn", 5), out, options=options, opset=17)
    model = onnx.load(str(out))
    assert report.verification is None
    assert [o.name for o in model.graph.output] == ["labels"]
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert options.opset == 99  # the caller's object is not changed
