"""Multi-head (SIFT Flow) and multi-input (NYUDv2 fusion) nets through fcn-export: every input
fed, every head verified, FP16, the dynamo exporter, the command, and what is refused."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from fcn_deploy.cli.export import main
from fcn_deploy.errors import FCNError
from fcn_deploy.export import export_model, verify_onnx
from fcn_deploy.export.verify import random_inputs
from fcn_deploy.meta import read_onnx_meta
from fcn_deploy.onnxgraph import interface_problems, write_meta

from export_helpers import SAMPLE, SIZES, meta_for, random_feeds, registry_model, run_onnx

SMALL = ["--sample-shape", "1x3x48x64", "--verify-shape", "1x3x48x64",
         "--verify-shape", "2x3x35x41", "--quiet"]


@pytest.fixture(scope="module")
def sift(tmp_path_factory):
    """A tiny two-head SIFT Flow FCN-16s (sem 5 classes, geo 3) exported with labels only."""
    model = registry_model("siftflow_fcn16s")
    out = tmp_path_factory.mktemp("sift") / "sift.onnx"
    export_model(model, meta_for(model), out, outputs="labels", sample_shape=SAMPLE, verify=False)
    return model, out


def test_verification_compares_each_head_and_finds_the_one_that_differs(sift):
    model, out = sift
    report = verify_onnx(out, model, sizes=SIZES[:2])
    assert report.passed and report.outputs == ["labels_sem", "labels_geo"]
    assert [(c.shape, c.head) for c in report.cases] == [
        (SIZES[0], "sem"), (SIZES[0], "geo"), (SIZES[1], "sem"), (SIZES[1], "geo")]
    # labels-only graph: each head's scores (the tensor its argmax reads) are compared too
    assert all(c.max_abs > 0 and c.max_rel < 1e-4 for c in report.cases)
    assert "1x3x48x64 sem" in report.table() and "2x3x35x41 geo" in report.table()
    # change the geometric head of the PyTorch model only: its rows fail, the semantic ones pass
    with torch.no_grad():
        model.score_fr_geo.bias.add_(torch.tensor([0.0, 5.0, -5.0]))
    try:
        broken = verify_onnx(out, model, sizes=SIZES[:1])
    finally:
        with torch.no_grad():
            model.score_fr_geo.bias.sub_(torch.tensor([0.0, 5.0, -5.0]))
    assert not broken.passed
    assert [c.passed for c in broken.cases] == [True, False]
    assert broken.cases[1].labels_differ > 0 and broken.cases[1].max_abs > 1.0


def test_verification_checks_the_graph_interface_against_the_metadata(sift, tmp_path):
    model, out = sift
    graph = onnx.load(str(out))
    meta = read_onnx_meta(out)
    assert interface_problems(graph, meta) == []
    # metadata claiming "both" outputs: the difference is named and nothing is run
    write_meta(graph, meta.replace(outputs="both"))
    bad = tmp_path / "bad.onnx"
    onnx.save(graph, str(bad))
    report = verify_onnx(bad, model, sizes=SIZES[:1])
    assert not report.passed and report.cases == []
    assert report.interface == [
        "outputs are ['labels_sem', 'labels_geo']; the metadata describes "
        "['scores_sem', 'scores_geo', 'labels_sem', 'labels_geo']"]
    assert "FAIL: outputs are" in report.table()


def test_depth_inputs_are_log_depth_values_not_images():
    meta = meta_for(registry_model("nyud_fcn32s_color_d"))
    feeds = random_inputs(meta.input_specs(), (2, 3, 9, 11), np.random.default_rng(0))
    assert {k: v.shape for k, v in feeds.items()} == {"image": (2, 3, 9, 11),
                                                      "depth": (2, 1, 9, 11)}
    mean = meta.input_specs()[1].mean[0]
    depth = feeds["depth"] + mean  # log(millimetres) of depths from 0.5 to 10 m
    assert depth.min() >= np.log(500) - 1e-5 and depth.max() <= np.log(10_000) + 1e-5
    assert feeds["image"].min() < -90 and feeds["image"].max() > 120  # pixels minus the mean


@pytest.mark.parametrize("name", ["siftflow_fcn16s", "nyud_fcn16s_color_hha"])
def test_fp16_export_of_multi_io_nets_verifies_per_head(name, tmp_path):
    model = registry_model(name)
    meta = meta_for(model)
    out = tmp_path / "m.fp16.onnx"
    report = export_model(model, meta, out, precision="fp16", outputs="both",
                          sample_shape=SAMPLE, verify_sizes=SIZES[:2])
    heads = meta.head_specs()
    assert report.verification.passed and len(report.verification.cases) == 2 * len(heads)
    assert all(0 < c.max_rel < 1e-2 for c in report.verification.cases)
    graph = onnx.load(str(out))
    assert [i.name for i in graph.graph.input] == meta.input_names
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in graph.graph.input)
    assert [o.name for o in graph.graph.output] == meta.output_names("both")
    assert read_onnx_meta(out).precision == "fp16"
    # every input's scores path is in FP16: each input is cast once
    casts = [n for n in graph.graph.node if n.op_type == "Cast" and n.input[0] in meta.input_names]
    assert sorted(n.input[0] for n in casts) == sorted(meta.input_names)
    result = run_onnx(out, random_feeds(meta, (1, 3, 40, 52), seed=7))
    for head in heads:
        assert np.array_equal(result[head.labels_output],
                              result[head.scores_output].argmax(axis=1))


def test_dynamo_exporter_takes_several_inputs(tmp_path):
    model = registry_model("nyud_fcn32s_color_d")
    report = export_model(model, meta_for(model), tmp_path / "m.onnx", exporter="dynamo",
                          sample_shape=SAMPLE, verify_sizes=SIZES[1:2])
    assert report.verification.passed and report.exporter == "dynamo"
    graph = onnx.load(str(tmp_path / "m.onnx"))
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in graph.graph.input] == [["batch", 3, "height", "width"],
                                            ["batch", 1, "height", "width"]]


@pytest.fixture
def sift_checkpoint(tmp_path):
    from fcn_deploy.models import save_checkpoint

    model = registry_model("siftflow_fcn16s")
    path = tmp_path / "sift.pt"
    save_checkpoint(path, model=model, meta=meta_for(model))
    return path


def test_cli_exports_a_two_head_checkpoint(sift_checkpoint, tmp_path, capsys):
    out = tmp_path / "sift.fp16.onnx"
    assert main([str(sift_checkpoint), "-o", str(out), "--outputs", "both", "--precision",
                 "fp16", *SMALL]) == 0
    text = capsys.readouterr().out
    assert "outputs scores_sem+scores_geo+labels_sem+labels_geo" in text
    rows = [line for line in text.splitlines() if line.rstrip().endswith(" ok")]
    assert [r.split()[:2] for r in rows] == [["1x3x48x64", "sem"], ["1x3x48x64", "geo"],
                                            ["2x3x35x41", "sem"], ["2x3x35x41", "geo"]]
    meta = read_onnx_meta(out)
    assert [h["name"] for h in meta.heads] == ["sem", "geo"] and meta.precision == "fp16"


def test_eval_dataset_compares_multi_io_nets_on_their_first_head(sift_checkpoint, tmp_path,
                                                                   capsys):
    """fcn-export --eval-dataset on a two-head net: FP16 against FP32 on the dataset's images,
    every input fed, the headline figures those of the first head (as fcn-eval's)."""
    out = tmp_path / "sift.fp16.onnx"
    assert main([str(sift_checkpoint), "-o", str(out), "--precision", "fp16", "--eval-dataset",
                 "synthetic-twohead:2:num_classes=5", *SMALL]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("fp16 vs fp32 on 2 images"))
    assert ", head sem): label agreement " in line
    from fcn_deploy.evaluate import export_compared

    model = registry_model("nyud_fcn32s_color_hha")
    report = export_compared(model, tmp_path / "rgbhha.fp16.onnx", meta=meta_for(model),
                             eval_dataset="synthetic-rgbd:2:num_classes=5", precision="fp16", verify=False,
                             sample_shape=(1, 3, 48, 48))
    cmp = report.comparison
    assert cmp.images == 2 and cmp.head == "" and cmp.pixels > 0
    # FP16 of the same net: labels agree almost everywhere (near-ties may flip)
    assert cmp.agreement > 0.9