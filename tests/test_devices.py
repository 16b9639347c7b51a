"""fcn_deploy.devices.parse_device: the one device-string parser every backend uses."""
import pytest

from fcn_deploy.devices import Device, parse_device
from fcn_deploy.engine.cuda import parse_device as gpu_index
from fcn_deploy.errors import FCNError
from fcn_deploy.runtime.onnxruntime_backend import choose_providers


@pytest.mark.parametrize("text,expected", [
    ("cpu", Device("cpu")), ("CPU", Device("cpu")), ("cuda", Device("cuda", 0)),
    ("cuda:3", Device("cuda", 3)), (2, Device("cuda", 2)), (None, None)])
def test_spellings(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("bad", ["tpu", "cuda:", "cuda:x", "gpu0", -1])
def test_refused_with_the_accepted_spellings(bad):
    with pytest.raises(FCNError, match=rf"device {bad!r} is not understood; use 'cpu', 'cuda' or "
                                       r"'cuda:N'"):
        parse_device(bad)


def test_backends_read_it_the_same_way():
    assert gpu_index("cuda:1") == gpu_index(1) == 1 and gpu_index(None) == 0
    with pytest.raises(FCNError, match="device 'cpu' is not a GPU; TensorRT runs on"):
        gpu_index("cpu")
    assert choose_providers("cuda:2", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        ("CUDAExecutionProvider", {"device_id": 2}), "CPUExecutionProvider"]
    assert choose_providers("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
