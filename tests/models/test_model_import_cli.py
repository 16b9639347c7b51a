"""fcn-import -> fcn-export: a published net's file becomes an ONNX graph computing that net."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch
from caffe_reference import caffe_forward, reference_net, to_prototxt

from fcn_deploy.cli.export import main as export_main
from fcn_deploy.cli.import_weights import main
from fcn_deploy.meta import read_onnx_meta
from fcn_deploy.models import caffe


def test_import_then_export_gives_the_caffe_nets_output(tmp_path, capsys):
    layers = reference_net("fcn8s", seed=21)
    src = caffe.write_caffemodel(tmp_path / "fcn8s-heavy-pascal.caffemodel", layers)
    proto = tmp_path / "val.prototxt"
    proto.write_text(to_prototxt(layers))
    ckpt = tmp_path / "fcn8s.pt"
    assert main([str(src), "-o", str(ckpt), "--prototxt", str(proto), "--classes", "voc"]) == 0
    out = capsys.readouterr().out
    assert "architecture: fcn8s_vgg16" in out and "classes: built-in voc" in out
    assert f"geometry: same as fcn8s_vgg16 in {proto}" in out
    assert f"wrote {ckpt} (39 tensors, " in out

    onnx_path = tmp_path / "fcn8s.onnx"
    assert export_main([str(ckpt), "-o", str(onnx_path), "--sample-shape", "1x3x48x64",
                        "--verify-shape", "1x3x37x53", "--quiet"]) == 0
    assert "FAIL" not in capsys.readouterr().out
    meta = read_onnx_meta(onnx_path)
    assert meta.arch == "fcn8s_vgg16" and meta.channel_order == "BGR" and meta.num_classes == 21

    x = torch.rand(1, 3, 45, 58, generator=torch.Generator().manual_seed(3)) * 255 - 120
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (scores,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    ref = caffe_forward(layers, x).numpy()
    assert scores.shape == ref.shape == (1, 21, 45, 58)
    assert np.abs(scores - ref).max() <= 2e-5 * np.abs(ref).max()


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    text = tmp_path / "deploy.prototxt"
    text.write_text('name: "x"\nlayer { name: "conv1" type: "Convolution" }\n')
    assert main([str(text), "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "is a text file" in err and "--prototxt" in err
    assert main([str(tmp_path / "none.caffemodel"), "-o", str(tmp_path / "m.pt")]) == 2
    assert "weights file" in capsys.readouterr().err
    src = caffe.write_caffemodel(tmp_path / "a.caffemodel", reference_net("fcn32s", seed=2))
    assert main([str(src), "-o", str(tmp_path / "m.pt"), "--arch", "fcn9s"]) == 2
    assert "unknown model 'fcn9s'; valid names:" in capsys.readouterr().err
    assert main([str(src), "-o", str(tmp_path / "no" / "m.pt")]) == 2
    assert f"output folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.caffemodel", "deploy.prototxt"]
