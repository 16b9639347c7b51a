"""FP16 variant: FP16 weights and arithmetic, FP32 input/outputs, accuracy measured."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from fcn_deploy.datasets import SyntheticShapes
from fcn_deploy.errors import FCNError
from fcn_deploy.evaluate import compare_onnx, export_compared
from fcn_deploy.export import export_model
from fcn_deploy.meta import read_onnx_meta

from export_helpers import SAMPLE, SIZES, meta_for, registry_model, run_onnx


@pytest.fixture(scope="module")
def alexnet_pair(tmp_path_factory):
    """FCN-AlexNet (it has LRN) exported as FP32 and FP16 with both outputs."""
    folder = tmp_path_factory.mktemp("fp16")
    model = registry_model("fcn_alexnet", num_classes=7)
    reports = {p: export_model(model, meta_for(model), folder / f"{p}.onnx", outputs="both",
                               precision=p, sample_shape=SAMPLE, verify_sizes=SIZES)
               for p in ("fp32", "fp16")}
    return folder, reports


def test_fp16_graph_has_fp16_weights_and_fp32_io(alexnet_pair):
    folder, reports = alexnet_pair
    assert reports["fp16"].verification.passed
    graph = onnx.load(str(folder / "fp16.onnx"))
    assert graph.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    types = {o.name: o.type.tensor_type.elem_type for o in graph.graph.output}
    assert types == {"scores": TensorProto.FLOAT, "labels": TensorProto.UINT8}
    weights = {t.name: t.data_type for t in graph.graph.initializer if len(t.dims) == 4}
    conv_weights = [n.input[1] for n in graph.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert conv_weights and all(weights[w] == TensorProto.FLOAT16 for w in conv_weights)
    # LRN stays FP32: it squares activations, which overflows FP16
    assert reports["fp16"].fp16["fp32_ops"] == ["LRN"]
    lrn_inputs = {n.input[0] for n in graph.graph.node if n.op_type == "LRN"}
    casts_to_fp32 = {n.output[0] for n in graph.graph.node
                     if n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT}
    assert lrn_inputs and lrn_inputs <= casts_to_fp32
    # the whole input image is cast once (no extra cast just to read its shape)
    assert sum(n.op_type == "Cast" and n.input[0] == "image" for n in graph.graph.node) == 1
    assert read_onnx_meta(folder / "fp16.onnx").precision == "fp16"
    assert (folder / "fp16.onnx").stat().st_size < 0.6 * (folder / "fp32.onnx").stat().st_size


def test_fp16_scores_close_and_labels_agree_with_fp32(alexnet_pair):
    folder, reports = alexnet_pair
    x = np.random.default_rng(5).uniform(-110, 130, size=(2, 3, 61, 77)).astype(np.float32)
    a, b = run_onnx(folder / "fp32.onnx", x), run_onnx(folder / "fp16.onnx", x)
    assert b["scores"].dtype == np.float32
    rel = np.abs(a["scores"] - b["scores"]).max() / np.abs(a["scores"]).max()
    assert 0 < rel < 1e-2
    assert np.array_equal(b["labels"], b["scores"].argmax(axis=1))
    assert np.mean(a["labels"] == b["labels"]) > 0.98
    assert max(c.max_rel for c in reports["fp16"].verification.cases) < 1e-2


def test_compare_onnx_measures_agreement_and_miou(alexnet_pair):
    folder, _ = alexnet_pair
    data = SyntheticShapes(num_images=3, min_size=40, max_size=56, seed=2)
    same = compare_onnx(folder / "fp32.onnx", folder / "fp32.onnx", data)
    assert same.agreement == 1.0 and same.miou_a == same.miou_b and same.images == 3
    assert same.pixels == sum(s.label.size for s in (data[i] for i in range(3)))
    result = compare_onnx(folder / "fp32.onnx", folder / "fp16.onnx", data)
    assert result.agreement > 0.98
    assert result.miou_a == same.miou_a  # the FP32 side is the same computation
    assert 0.0 <= result.miou_b <= 1.0 and abs(result.miou_change) < 0.02
    assert "label agreement" in result.summary()


def test_the_fp32_reference_and_the_comparison_need_fp16(tmp_path):
    """export_model only writes the FP32 reference graph (for fcn_deploy.evaluate to compare
    with); it takes no dataset, and neither it nor export_compared accepts FP32."""
    model = registry_model("fcn32s_vgg16", num_classes=7)
    with pytest.raises(FCNError, match=r"fp32_reference is the FP32 graph to compare an FP16 "
                                       r"export with; use it with precision fp16"):
        export_model(model, meta_for(model), tmp_path / "m.onnx", fp32_reference=tmp_path / "r")
    with pytest.raises(FCNError, match=r"unknown export option\(s\) eval_dataset"):
        export_model(model, meta_for(model), tmp_path / "m.onnx", eval_dataset="synthetic:2")
    with pytest.raises(FCNError, match=r"--eval-dataset measures what FP16 changes against FP32"):
        export_compared(model, tmp_path / "m.onnx", meta=meta_for(model),
                        eval_dataset="synthetic:2")
    assert list(tmp_path.iterdir()) == []


def test_export_with_eval_dataset_reports_the_fp16_change(tmp_path):
    model = registry_model("fcn32s_vgg16", num_classes=7)
    report = export_compared(model, tmp_path / "m.fp16.onnx", meta=meta_for(model),
                             precision="fp16", outputs="labels", sample_shape=SAMPLE,
                             verify_sizes=SIZES[:2],
                             eval_dataset=SyntheticShapes(num_images=2, min_size=40, max_size=48))
    assert report.comparison is not None and report.comparison.images == 2
    assert report.comparison.name_a == "fp32" and report.comparison.name_b == "fp16"
    assert report.comparison.agreement > 0.98
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fp16.onnx"]  # no temp files left
