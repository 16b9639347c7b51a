"""INT8 post-training quantization into explicit Q/DQ graphs that TensorRT accepts.

``quantize_onnx`` calibrates an FP32 graph (ONNX Runtime's calibrators do the statistics) and
writes the Q/DQ graph; ``check_trt_qdq`` checks any graph against TensorRT's rules; the
calibration reader feeds images one at a time at their own size.
"""
from fcn_deploy.quantize.calibration import (CalibrationReader, CalibrationWarning,
                                             open_calibration_source)
from fcn_deploy.quantize.ptq import (DEFAULT_EXCLUDE, KINDS, METHODS, MissingMetadataWarning,
                                     QuantizeConfig, QuantizeResult, find_layer_kinds,
                                     load_fp32_graph, quantize_onnx, select_excluded_nodes)
from fcn_deploy.quantize.trt_rules import check_trt_qdq

__all__ = [
    "CalibrationReader", "CalibrationWarning", "DEFAULT_EXCLUDE", "KINDS", "METHODS",
    "MissingMetadataWarning", "QuantizeConfig", "QuantizeResult", "check_trt_qdq",
    "find_layer_kinds", "load_fp32_graph", "open_calibration_source",
    "quantize_onnx", "select_excluded_nodes",
]
