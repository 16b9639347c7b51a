"""Inference over every backend behind one runner contract, and the Segmenter on top.

Importing this package is cheap: ONNX Runtime, PyTorch, TensorRT and cuda-python are imported
only when a runner of that backend is opened.
"""
from fcn_deploy.runtime.base import Runner, TensorInfo
from fcn_deploy.runtime.registry import (BackendSpec, available_backends, backend_status,
                                         default_backend, list_backends, open_runner,
                                         register_backend)
from fcn_deploy.runtime.segmenter import Segmenter

__all__ = ["BackendSpec", "Runner", "Segmenter", "TensorInfo", "available_backends",
           "backend_status", "default_backend", "list_backends", "open_runner",
           "register_backend"]
