"""fcn-eval and fcn_deploy.evaluate: numbers against a ConfusionMatrix computed directly,
label-map agreement, the FP32/FP16/INT8 table, model.pt checkpoints and the error cases."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_deploy.datasets import SyntheticShapes
from fcn_deploy.errors import FCNError
from fcn_deploy.evaluate import compare_models, evaluate
from fcn_deploy.meta import ModelMeta, write_onnx_meta
from fcn_deploy.metrics import ConfusionMatrix

C = 4
DATA = dict(num_images=6, seed=3, num_classes=C, min_size=32, max_size=48)
MEAN = [104.0, 117.0, 123.0]


def _pixel_classifier(path, *, weight_seed=0, labels=False, num_classes=C, meta=True):
    """image -> 3x3 conv -> relu -> 1x1 conv -> scores (+ argmax labels): a small dynamic-size
    per-pixel classifier that separates SyntheticShapes' colours reasonably."""
    rng = np.random.default_rng(weight_seed)
    w1 = rng.normal(0, 0.05, (8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (num_classes, 8, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
             numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(rng.normal(0, 1, num_classes).astype(np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["h"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu1"),
             helper.make_node("Conv", ["r", "w2", "b2"], ["scores"], name="score")]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT,
                                             ["batch", num_classes, "height", "width"])]
    if labels:
        nodes += [helper.make_node("ArgMax", ["scores"], ["am"], axis=1, keepdims=0),
                  helper.make_node("Cast", ["am"], ["labels"], to=TensorProto.UINT8)]
        outputs.append(helper.make_tensor_value_info("labels", TensorProto.UINT8,
                                                     ["batch", "height", "width"]))
    graph = helper.make_graph(nodes, "clf", [helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, ["batch", 3, "height", "width"])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    if meta:
        write_onnx_meta(model, ModelMeta.default("pixel_clf", num_classes, mean=MEAN,
                                                 outputs="both" if labels else "scores"))
    onnx.save(model, str(path))
    return path


def _direct(path, data, num_classes=C):
    """ConfusionMatrix and label maps computed here, straight from ONNX Runtime."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cm, preds = ConfusionMatrix(num_classes), []
    for sample in data:
        x = (sample.image.astype(np.float32) - np.float32(MEAN)).transpose(2, 0, 1)[None]
        pred = sess.run(["scores"], {"image": x})[0][0].argmax(axis=0)
        cm.update(sample.label, pred)
        preds.append(pred)
    return cm, preds


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    return (_pixel_classifier(folder / "a.onnx", weight_seed=0),
            _pixel_classifier(folder / "b.onnx", weight_seed=1, labels=True))


def test_evaluate_matches_a_direct_confusion_matrix(models):
    data = SyntheticShapes(**DATA)
    result = evaluate(models[0], data, progress=False)
    cm, _ = _direct(models[0], data)
    np.testing.assert_array_equal(result.confusion, cm.matrix)
    want = cm.compute()
    for name in ("mean_iu", "pixel_accuracy", "mean_accuracy", "fw_iu"):
        assert getattr(result.metrics, name) == pytest.approx(getattr(want, name), abs=1e-12)
    assert result.num_images == 6 and result.precision == "fp32" and result.agreement is None
    # and the matrix itself: every labelled pixel counted once
    assert result.confusion.sum() == sum(int(np.count_nonzero(s.label != 255)) for s in data)


def test_compare_models_agreement_and_deltas(models, tmp_path):
    data = SyntheticShapes(**DATA)
    report = compare_models(list(models), data, progress=False)
    (_, preds_a), (cm_b, preds_b) = _direct(models[0], data), _direct(models[1], data)
    same = sum(int(np.count_nonzero(a == b)) for a, b in zip(preds_a, preds_b))
    total = sum(a.size for a in preds_a)
    ref, other = report.results
    assert other.agreement == pytest.approx(same / total, abs=1e-15)
    assert 0 < other.agreement < 1  # two different classifiers
    np.testing.assert_array_equal(other.confusion, cm_b.matrix)
    d = report.to_dict()
    assert d["models"][1]["delta_mean_iu"] == pytest.approx(
        other.metrics.mean_iu - ref.metrics.mean_iu)
    for got, a, b in zip(d["models"][1]["delta_per_class_iu"], ref.metrics.per_class_iu,
                         other.metrics.per_class_iu):
        assert (got is None and math.isnan(b - a)) or got == pytest.approx(b - a)
    md = report.to_markdown()
    assert f"| a.onnx | fp32 | {100 * ref.metrics.mean_iu:.2f} | — |" in md
    assert f"| {100 * other.agreement:.2f} |" in md
    assert "| 0 background |" in md
    md_path, json_path = report.write(tmp_path / "report.md")
    assert json_path == tmp_path / "report.json"
    assert json.loads(json_path.read_text())["models"][1]["agreement"] == other.agreement
    assert md_path.read_text() == md


def test_fp32_fp16_int8_table_with_the_cli(tmp_path, capsys):
    from onnxconverter_common import float16

    from fcn_deploy.cli.evaluate import main
    from fcn_deploy.quantize import QuantizeConfig, quantize_onnx

    # 7 classes: what the plain "synthetic:N" spec has
    fp32 = _pixel_classifier(tmp_path / "fp32.onnx", labels=True, num_classes=7)
    half = float16.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    write_onnx_meta(half, ModelMeta.default("pixel_clf", 7, mean=MEAN, precision="fp16",
                                            outputs="both"))
    onnx.save(half, str(tmp_path / "fp16.onnx"))
    quantize_onnx(fp32, tmp_path / "int8.onnx", SyntheticShapes(num_images=8, seed=9),
                  config=QuantizeConfig(progress=False))
    paths = [str(tmp_path / f"{p}.onnx") for p in ("fp32", "fp16", "int8")]
    rc = main(paths + ["--dataset", "synthetic:5", "-o", str(tmp_path / "report.md"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| fp16.onnx | fp16 |" in out and "| int8.onnx | int8 |" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert [m["precision"] for m in report["models"]] == ["fp32", "fp16", "int8"]
    assert report["dataset"] == "synthetic:5" and report["num_images"] == 5
    assert report["models"][1]["agreement"] > 0.99  # fp16 of a tiny net: nearly identical
    assert report["models"][2]["agreement"] > 0.9
    assert (tmp_path / "report.md").read_text().startswith("# Accuracy: fp32.onnx, fp16.onnx")
    # the CPU's int8 path is printed and recorded for the INT8 graph only
    from fcn_deploy.cpu import int8_kernels

    assert f": {int8_kernels().describe()}." in out
    assert [m["int8_kernels"] for m in report["models"]] == [None, None,
                                                             int8_kernels().describe()]


def test_int8_kernels_on_a_cpu_without_vnni(tmp_path):
    """fcn-eval on a CPU reported as lacking VNNI runs INT8 graphs on exact U8U8 kernels by
    default and says so; --int8-kernels fast is passed through and reported with its warning."""
    from fcn_deploy.cli.evaluate import main
    from fcn_deploy.cpu import CpuFeatures, assume_cpu
    from fcn_deploy.quantize import QuantizeConfig, quantize_onnx

    fp32 = _pixel_classifier(tmp_path / "fp32.onnx", labels=True, num_classes=7)
    quantize_onnx(fp32, tmp_path / "int8.onnx", SyntheticShapes(num_images=4, seed=9),
                  config=QuantizeConfig(progress=False))
    paths = [str(fp32), str(tmp_path / "int8.onnx")]
    no_vnni = CpuFeatures(machine="x86_64", flags=frozenset({"avx2"}), name="Old EPYC")
    with assume_cpu(no_vnni):
        report = compare_models(paths, "synthetic:2", progress=False)
        assert [r.int8_kernels for r in report.results] == [
            None, "int8: exact U8U8 kernels (no VNNI)"]
        assert ("INT8 on this CPU (Old EPYC, no VNNI): int8: exact U8U8 kernels (no VNNI)."
                in report.to_markdown())
        assert main(paths + ["--dataset", "synthetic:2", "--quiet", "--int8-kernels", "fast",
                             "-o", str(tmp_path / "fast.md")]) == 0
    fast = json.loads((tmp_path / "fast.json").read_text())["models"][1]["int8_kernels"]
    assert fast.startswith("int8: fast U8S8 kernels, may saturate (no VNNI")


def test_checkpoint_is_evaluated_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from fcn_deploy.models import create_model
    from fcn_deploy.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("fcn32s_vgg16", num_classes=C, width=1 / 16).eval()
    meta = ModelMeta.default("fcn32s_vgg16", C, arch_kwargs=model.arch_kwargs)
    save_checkpoint(tmp_path / "model.pt", model=model, meta=meta)
    data = SyntheticShapes(num_images=2, seed=4, num_classes=C, min_size=32, max_size=40)
    threads = torch.get_num_threads()
    try:  # one thread: on 2 shared cores a second torch thread is many times slower
        result = evaluate(tmp_path / "model.pt", data, progress=False, threads=1)
    finally:
        torch.set_num_threads(threads)
    cm = ConfusionMatrix(C)
    with torch.no_grad():
        torch.set_num_threads(1)
        for s in data:
            x = (s.image.astype(np.float32) - np.float32(meta.mean)).transpose(2, 0, 1)[None]
            cm.update(s.label, model(torch.from_numpy(np.ascontiguousarray(x)))[0].argmax(0).numpy())
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(result.confusion, cm.matrix)


def test_errors(models, tmp_path, capsys):
    from fcn_deploy.cli.evaluate import main

    with pytest.raises(FCNError, match=r"predicts 4 classes but dataset 'synthetic:2' has 7"):
        evaluate(models[0], "synthetic:2", progress=False)
    with pytest.raises(FCNError, match=r"model .*nope\.onnx does not exist; expected an .onnx graph or a model.pt"):
        evaluate(tmp_path / "nope.onnx", "synthetic:2", progress=False)
    with pytest.raises(FCNError, match="no model to evaluate"):
        compare_models([], "synthetic:2")
    import cv2

    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    spec = f"folder:{tmp_path / 'imgs'}"
    bare = _pixel_classifier(tmp_path / "c21.onnx", num_classes=21)
    with pytest.raises(FCNError, match=r"image 'a' has no label; evaluation needs a labelled"):
        evaluate(bare, spec, progress=False)
    rc = main([str(models[0]), "--dataset", "nonsense", "--quiet"])
    assert rc == 2
    assert "error: dataset spec 'nonsense' is not understood" in capsys.readouterr().err
    rc = main([str(models[0]), "--dataset", "synthetic:2", "-o", str(tmp_path / "no" / "r.md"),
               "--quiet"])
    assert rc == 2


def test_report_path_over_a_model_is_refused_before_evaluating(models, tmp_path, capsys,
                                                               monkeypatch):
    from fcn_deploy import evaluate as ev
    from fcn_deploy.cli.evaluate import main

    before = models[0].read_bytes()

    def no_run(*a, **k):
        raise AssertionError("the evaluation must not start")

    monkeypatch.setattr(ev, "_run", no_run)
    assert main([str(models[0]), "--dataset", "synthetic:2", "-o", str(models[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: fcn-eval: report {models[0]} is also the model {models[0]}: writing it would "
        "destroy that input; choose another output path\n")
    # the JSON written next to the report counts too: -o a.md would write a.json
    js = tmp_path / "r.json"
    assert main([str(models[0]), str(js), "--dataset", "synthetic:2", "-o",
                 str(tmp_path / "r.md")]) == 2
    assert "JSON report" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main([str(models[0]), "--dataset", "synthetic:2", "-o",
                 str(tmp_path / "file" / "r.md")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert models[0].read_bytes() == before


def test_folder_dataset_takes_the_classes_from_the_model(tmp_path):
    """A 5-class model on a folder of masks: classes, names and palette come from its metadata
    (plain folders do not name their classes; VOC's 21 would not match)."""
    import cv2

    from fcn_deploy.datasets import create_dataset
    from fcn_deploy.meta import read_onnx_meta

    model = _pixel_classifier(tmp_path / "five.onnx", num_classes=5, weight_seed=4)
    shapes = SyntheticShapes(num_images=3, seed=1, num_classes=5, min_size=32, max_size=40)
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "img" / f"s{i}.png"), shapes[i].image)
        cv2.imwrite(str(tmp_path / "mask" / f"s{i}.png"), shapes[i].label)
    spec = f"folder:{tmp_path / 'img'},{tmp_path / 'mask'}"
    report = compare_models([model], spec, progress=False)
    meta = read_onnx_meta(model)
    assert report.class_names == list(meta.class_names) and len(report.class_names) == 5
    data = create_dataset(spec, num_classes=5)
    direct, _ = _direct(model, [data[i] for i in range(len(data))], num_classes=5)
    np.testing.assert_array_equal(report.results[0].confusion, direct.matrix)


def test_report_write_refuses_a_model_path(models, tmp_path):
    report = compare_models([models[0]], SyntheticShapes(**{**DATA, "num_images": 1}),
                            progress=False)
    before = models[0].read_bytes()
    with pytest.raises(FCNError, match=r"ComparisonReport.write: report .*a\.onnx is also the model"):
        report.write(models[0])
    assert models[0].read_bytes() == before
    md, js = report.write(tmp_path / "r.md")
    assert md.is_file() and js.is_file()


def test_json_report_path_gets_json_and_limit_below_1_is_refused(models, tmp_path, capsys):
    import json

    from fcn_deploy.cli.evaluate import main
    from fcn_deploy.evaluate import report_paths

    assert report_paths(tmp_path / "r.json") == (tmp_path / "r.md", tmp_path / "r.json")
    assert report_paths(tmp_path / "r.md") == (tmp_path / "r.md", tmp_path / "r.json")
    assert report_paths(tmp_path / "r") == (tmp_path / "r", tmp_path / "r.json")
    # -o r.json held the Markdown (and the JSON went to r.json.json)
    r = tmp_path / "r.json"
    report = compare_models([models[1]], SyntheticShapes(**DATA), progress=False)
    assert report.write(r) == (tmp_path / "r.md", r)
    assert json.loads((tmp_path / "r.json").read_text())
    assert (tmp_path / "r.md").read_text() == report.to_markdown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]
    # --limit -1 said "dataset 'synthetic:2' is empty"
    assert main([str(models[1]), "--dataset", "synthetic:2", "--limit", "-1", "--quiet"]) == 2
    assert capsys.readouterr().err == "error: image limit must be >= 1, got -1\n"
