"""PyTorch FCN -> ONNX with dynamic batch/height/width, optimized for deployment and verified.

Public API: ``export_model`` (options in an ``ExportOptions``), ``export_checkpoint``,
``verify_onnx`` and their reports (``CompareReport`` is filled by
``fcn_deploy.evaluate.compare_onnx``). torch and onnxruntime are imported only when these run.
"""
from fcn_deploy.export.api import (DEFAULT_EXPORTER, DEFAULT_OPSET, DEFAULT_SAMPLE_SHAPE,
                                   MAX_OPSET, MIN_OPSET, ExportOptions, ExportReport,
                                   export_checkpoint, export_model, load_checkpoint_model)
from fcn_deploy.export.compare import CompareReport
from fcn_deploy.export.verify import (TOLERANCES, Tolerance, VerificationReport, VerifyCase,
                                      default_sizes, verify_onnx)

__all__ = [
    "DEFAULT_EXPORTER", "DEFAULT_OPSET", "DEFAULT_SAMPLE_SHAPE", "MAX_OPSET", "MIN_OPSET",
    "ExportOptions", "ExportReport", "export_checkpoint", "export_model", "load_checkpoint_model",
    "CompareReport",
    "TOLERANCES", "Tolerance", "VerificationReport", "VerifyCase", "default_sizes", "verify_onnx",
]
