"""Suite-wide rule for tests marked ``tensorrt`` (they need TensorRT, cuda-python and a GPU).

They skip where there is no NVIDIA GPU, and FAIL where ``nvidia-smi`` lists a GPU that the
TensorRT stack cannot use (an old driver for cuda-python's CUDA major, a missing libnvinfer...):
a skip there would hide a broken installation. The decision is
:func:`fcn_deploy.engine.cuda.gpu_test_decision`, made once per session.
"""
from __future__ import annotations

import pytest

_DECISION: tuple[str, str] | None = None


def tensorrt_decision() -> tuple[str, str]:
    """("run" | "skip" | "fail", why), computed once."""
    global _DECISION
    if _DECISION is None:
        from fcn_deploy.engine.cuda import gpu_test_decision, nvidia_smi_gpus, tensorrt_stack_problem

        _DECISION = gpu_test_decision(smi_gpus=nvidia_smi_gpus(), problem=tensorrt_stack_problem())
    return _DECISION


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("tensorrt") is None:
        return
    action, why = tensorrt_decision()
    if action == "skip":
        pytest.skip(why)
    if action == "fail":
        pytest.fail(why, pytrace=False)
