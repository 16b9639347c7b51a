"""Exporters register by name: export_torch and fcn-export use whatever is registered."""
from __future__ import annotations

import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.export import torch_export
from fcn_deploy.export.torch_export import (EXPORTERS, export_torch, get_exporter,
                                            register_exporter)

from export_helpers import TinyFCN


def test_the_built_in_exporters_are_registered_and_offered_by_fcn_export():
    from fcn_deploy.cli.export import build_parser

    assert list(EXPORTERS) == ["legacy", "dynamo"]
    choices = next(a.choices for a in build_parser()._actions if "--exporter" in a.option_strings)
    assert tuple(choices) == ("legacy", "dynamo")
    with pytest.raises(FCNError, match="unknown exporter 'onnxscript'; valid: legacy, dynamo"):
        get_exporter("onnxscript")


def test_a_registered_exporter_is_used_by_export_torch(monkeypatch):
    monkeypatch.setattr(torch_export, "EXPORTERS", dict(EXPORTERS))
    calls = []

    @register_exporter("recording")
    def recording(model, samples, path, *, opset, input_names, output_names):
        calls.append(([tuple(s.shape) for s in samples], opset, input_names, output_names))
        torch_export.EXPORTERS["legacy"](model, samples, path, opset=opset,
                                         input_names=input_names, output_names=output_names)

    assert get_exporter("recording") is recording
    proto = export_torch(TinyFCN().eval(), sample_shape=(1, 3, 40, 48), opset=17,
                         exporter="recording")
    assert calls == [([(1, 3, 40, 48)], 17, ["image"], ["scores"])]
    assert [i.name for i in proto.graph.input] == ["image"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    register_exporter("recording")(recording)  # the same function again is fine
    with pytest.raises(ValueError, match="exporter name 'legacy' is already registered"):
        register_exporter("legacy")(recording)
