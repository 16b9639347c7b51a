"""fcn-deploy: Fully Convolutional Networks from PyTorch training to optimized deployment.

Importing the package is cheap: torch, onnx, onnxruntime and TensorRT are imported by the
submodules that need them, never here.
"""
from fcn_deploy.errors import FCNError

__version__ = "0.1.0"

__all__ = ["FCNError", "__version__"]
