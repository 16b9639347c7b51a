"""ModelMeta's inputs and heads: completion, validation, output names, old checkpoints."""
import pytest

from fcn_deploy.constants import (NYUD_HHA_MEAN, NYUD_LOG_DEPTH_MEAN, SIFTFLOW_GEO_CLASSES,
                                  VGG_MEAN_BGR, voc_palette)
from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta


def _two_head(**kw):
    return ModelMeta.default("siftflow_fcn16s", 4, heads=[
        {"name": "sem", "num_classes": 4},
        {"name": "geo", "num_classes": 3, "class_names": list(SIFTFLOW_GEO_CLASSES)}], **kw)


def test_single_input_single_head_defaults_describe_todays_contract():
    meta = ModelMeta.default("fcn8s_vgg16", 21)
    assert meta.inputs == [] and meta.heads == [] and not meta.multi_head
    (spec,) = meta.input_specs()
    assert (spec.name, spec.channels, spec.mean, spec.channel_order, spec.encoding) == (
        "image", 3, tuple(VGG_MEAN_BGR), "BGR", "image")
    (head,) = meta.head_specs()
    assert (head.name, head.num_classes, head.scores_output, head.labels_output) == (
        "score", 21, "scores", "labels")
    assert meta.output_names() == ["scores"]
    assert meta.output_names("both") == ["scores", "labels"]
    assert meta.input_names == ["image"]


def test_heads_are_completed_and_named_per_head():
    meta = _two_head(outputs="both")
    sem, geo = meta.head_specs()
    assert sem.class_names == tuple(meta.class_names) and sem.palette[1] == tuple(voc_palette(2)[1])
    assert geo.class_names == SIFTFLOW_GEO_CLASSES and len(geo.palette) >= 3
    assert (geo.scores_output, geo.labels_output) == ("scores_geo", "labels_geo")
    assert meta.output_names() == ["scores_sem", "scores_geo", "labels_sem", "labels_geo"]
    assert meta.output_names("labels") == ["labels_sem", "labels_geo"]
    # a head without names gets class_<i> and VOC colours
    meta = ModelMeta.default("x", 2, heads=[{"name": "a", "num_classes": 2},
                                            {"name": "b", "num_classes": 2}])
    assert meta.heads[1]["class_names"] == ["class_0", "class_1"]


def test_known_modalities_get_their_reference_preprocessing():
    meta = ModelMeta.default("nyud_fcn32s_color_d", 40, inputs=[
        {"name": "image", "channels": 3}, {"name": "depth", "channels": 1}])
    image, depth = meta.input_specs()
    assert image.mean == tuple(VGG_MEAN_BGR) and image.encoding == "image"
    assert depth.mean == (NYUD_LOG_DEPTH_MEAN,) and depth.encoding == "log_depth"
    meta = ModelMeta.default("nyud_fcn32s_hha", 40, inputs=[{"name": "hha", "channels": 3}])
    (hha,) = meta.input_specs()
    assert hha.mean == tuple(NYUD_HHA_MEAN) and hha.channel_order == "RGB"
    assert meta.input_names == ["hha"]


@pytest.mark.parametrize("kw, message", [
    ({"inputs": [{"name": "image", "channels": 3}, {"name": "image", "channels": 3}]}, "unique"),
    ({"inputs": [{"name": "Image", "channels": 3}]}, "lower-case identifier"),
    ({"inputs": [{"name": "depth", "channels": 3}]}, "log_depth) has 3 channels"),
    ({"inputs": [{"name": "x", "channels": 3}]}, "needs 3 mean value"),
    ({"inputs": [{"name": "x", "channels": 3, "mean": [1, 2, 3], "encoding": "jpeg"}]},
     "encoding 'jpeg'"),
    ({"heads": [{"name": "sem", "num_classes": 4}]}, "two or more"),
    ({"heads": [{"name": "sem", "num_classes": 5}, {"name": "geo", "num_classes": 3}]},
     "first head 'sem' has 5 classes but num_classes is 4"),
    ({"heads": [{"name": "sem", "num_classes": 4},
                {"name": "geo", "num_classes": 3, "class_names": ["a"]}]}, "1 class names for 3"),
])
def test_bad_inputs_and_heads_are_refused_with_the_reason(kw, message):
    with pytest.raises(FCNError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelMeta.default("x", 4, **kw)


def test_round_trips_through_dict_and_onnx_props():
    meta = _two_head(inputs=[{"name": "image", "channels": 3}, {"name": "hha", "channels": 3}])
    assert ModelMeta.from_dict(meta.to_dict()) == meta
    props = meta.to_onnx_props()
    assert props["fcn.heads"].startswith('[{"name": "sem"')
    assert ModelMeta.from_onnx_props(props) == meta


def test_checkpoints_that_kept_inputs_and_heads_in_extra_still_load():
    old = ModelMeta.default("siftflow_fcn16s", 4).to_dict()
    old["extra"] = {"heads": [{"name": "sem", "num_classes": 4},
                              {"name": "geo", "num_classes": 3}], "note": 1}
    meta = ModelMeta.from_dict(old)
    assert [h.name for h in meta.head_specs()] == ["sem", "geo"] and meta.extra == {"note": 1}


def test_each_input_is_preprocessed_by_its_encoding():
    import numpy as np

    from fcn_deploy.preprocess import preprocess_input

    meta = ModelMeta.default("nyud_fcn32s_color_d", 40, inputs=[
        {"name": "image", "channels": 3}, {"name": "hha", "channels": 3},
        {"name": "depth", "channels": 1}])
    image, hha, depth = meta.input_specs()
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0], bgr[..., 2] = 10, 200  # blue 10, red 200
    x = preprocess_input(image, bgr)
    assert x.shape == (3, 2, 3) and x[0, 0, 0] == np.float32(10) - np.float32(VGG_MEAN_BGR[0])
    y = preprocess_input(hha, bgr)  # RGB order: the PNG's red channel first
    assert y[0, 1, 2] == np.float32(200) - np.float32(NYUD_HHA_MEAN[0])
    d = preprocess_input(depth, np.array([[0, 1000]], np.uint16))
    assert d.shape == (1, 1, 2) and d.dtype == np.float32
    assert d[0, 0, 0] == -np.float32(NYUD_LOG_DEPTH_MEAN)  # missing depth counts as 1 mm
    assert d[0, 0, 1] == pytest.approx(np.log(1000) - NYUD_LOG_DEPTH_MEAN, abs=1e-6)
    with pytest.raises(FCNError, match="input 'depth': expected an HxW depth map"):
        preprocess_input(depth, bgr)
    with pytest.raises(FCNError, match="input 'hha': expected an HxWx3 image"):
        preprocess_input(hha, np.zeros((2, 3), np.uint8))
