"""fcn_deploy.onnxgraph: the one ONNX load/save/metadata/graph layer."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_deploy import meta as meta_module
from fcn_deploy import onnxgraph
from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta


def _qdq_model(zp: np.ndarray | None, *, zp_as_constant_node: bool = False) -> onnx.ModelProto:
    """x -> QuantizeLinear(scale 0.5, zp) -> DequantizeLinear -> y, plus an unused initializer."""
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "s"),
             numpy_helper.from_array(np.zeros(3, np.float32), "unused")]
    nodes = []
    q_inputs = ["x", "s"]
    if zp is not None:
        if zp_as_constant_node:
            nodes.append(helper.make_node("Constant", [], ["zp"], value=numpy_helper.from_array(zp)))
        else:
            inits.append(numpy_helper.from_array(zp, "zp"))
        q_inputs.append("zp")
    nodes += [helper.make_node("QuantizeLinear", q_inputs, ["q"], name="q0"),
              helper.make_node("DequantizeLinear", ["q", *q_inputs[1:]], ["y"], name="dq0")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_meta_round_trip_keeps_foreign_keys_and_reads_back(tmp_path):
    model = _qdq_model(np.array(0, np.int8))
    entry = model.metadata_props.add()
    entry.key, entry.value = "producer.note", "kept"
    meta = ModelMeta.default("fcn8s_vgg16", 3, precision="int8")
    onnxgraph.write_meta(model, meta)
    onnxgraph.write_meta(model, meta.replace(precision="fp32"))  # replaces, never duplicates
    keys = [p.key for p in model.metadata_props]
    assert keys.count("fcn.precision") == 1 and "producer.note" in keys
    assert onnxgraph.meta_props(model)["precision"] == "fp32"
    path = tmp_path / "m.onnx"
    onnxgraph.save_model(model, path)
    assert onnxgraph.read_meta(path).class_names == ["class_0", "class_1", "class_2"]
    # The old import path still works and is the same function.
    assert meta_module.read_onnx_meta is onnxgraph.read_meta
    assert meta_module.write_onnx_meta is onnxgraph.write_meta


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FCNError, match=r"ONNX file .*nope\.onnx does not exist"):
        onnxgraph.load_model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01\x12garbage")
    with pytest.raises(FCNError, match=r"bad\.onnx is not a readable ONNX file"):
        onnxgraph.load_model(bad)
    bare = tmp_path / "bare.onnx"
    onnxgraph.save_model(_qdq_model(None), bare)
    with pytest.raises(FCNError, match=r"bare\.onnx: the ONNX file carries no fcn-deploy metadata"):
        onnxgraph.read_meta(bare)
    assert onnxgraph.read_meta_if_any(onnxgraph.load_model(bare)) is None


@pytest.mark.parametrize("as_node", [False, True])
def test_zero_point_rules(as_node):
    g = onnxgraph.Graph(_qdq_model(np.array(0, np.int8), zp_as_constant_node=as_node))
    q = g.nodes[-2]
    zp = onnxgraph.zero_point(g, q)
    assert (zp.name, zp.constant, zp.type_name, zp.numpy_name, zp.nonzero, zp.shape) == (
        "zp", True, "INT8", "int8", False, ())
    g = onnxgraph.Graph(_qdq_model(np.array(3, np.uint8)))
    shifted = onnxgraph.zero_point(g, g.nodes[-2])
    assert (shifted.type_name, shifted.nonzero) == ("UINT8", True)
    g = onnxgraph.Graph(_qdq_model(None))
    missing = onnxgraph.zero_point(g, g.nodes[-2])
    assert (missing.name, missing.constant) == ("", False)


def test_graph_maps_precision_and_cleanup():
    model = _qdq_model(np.array(0, np.int8))
    g = onnxgraph.Graph(model)
    assert g.producer["q"].name == "q0"
    assert [(n.name, i) for n, i in g.consumers["s"]] == [("q0", 1), ("dq0", 1)]
    assert g.graph_inputs == {"x"} and g.graph_outputs == {"y"}
    assert float(g.constant("s")) == 0.5 and g.constant("x") is None
    report = onnxgraph.detect_precision(model)
    assert (report.precision, report.qdq_nodes, report.problems) == ("int8", 2, [])
    assert onnxgraph.remove_unused_initializers(model) == 1
    assert sorted(t.name for t in model.graph.initializer) == ["s", "zp"]
    node = model.graph.node[0]
    onnxgraph.set_attr(node, "axis", 0)
    onnxgraph.set_attr(node, "axis", 1)
    assert onnxgraph.attr(node, "axis") == 1 and len(node.attribute) == 1
    assert onnxgraph.attr(node, "missing", "dflt") == "dflt"
