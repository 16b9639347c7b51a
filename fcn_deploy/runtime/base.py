"""The runner contract, re-exported where it was first documented.

It lives in :mod:`fcn_deploy.contract`, below every backend package, so backends that sit under
the runtime (TensorRT's runner in :mod:`fcn_deploy.engine`) implement it without importing
``fcn_deploy.runtime`` (which opens them).
"""
from fcn_deploy.contract import (INPUT_NAME, LABELS, SCORES, Runner, TensorInfo,  # noqa: F401
                                 argmax_labels)

__all__ = ["INPUT_NAME", "LABELS", "SCORES", "Runner", "TensorInfo", "argmax_labels"]
