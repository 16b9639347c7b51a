"""The one exception type for user errors.

A user error is something the person running the toolkit can fix: a missing or corrupt file, an
image in the wrong format, a shape outside an engine's profile, an empty calibration set. Its
message names the thing and says what was expected. Commands print it without a traceback and exit
non-zero. Bugs stay ordinary exceptions.
"""
from __future__ import annotations

import math
import numbers


class FCNError(Exception):
    """A user error whose message names the offending thing and what was expected."""


def require_int(value: object, *, what: str, minimum: int | None = None,
                expected: str | None = None) -> int:
    """``value`` as an int when it is an integer (not a bool) >= ``minimum``; otherwise an
    FCNError naming ``what`` and what was expected (``expected`` overrides the wording).

    Options may come from config files, where ``"2"`` is a string: it is refused by name here
    instead of failing later as a TypeError deep inside ONNX Runtime, PyTorch or TensorRT.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or (minimum is not None and value < minimum):
        want = expected or ("an integer" if minimum is None else f"an integer >= {minimum}")
        kind = "" if ok else f" ({type(value).__name__})"
        raise FCNError(f"{what} must be {want}, got {value!r}{kind}")
    return int(value)


def require_positive_number(value: object, *, what: str) -> float:
    """``value`` as a float when it is a real number > 0 (not a bool), else an FCNError naming
    ``what`` (a ``"30"`` from a config file included)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        kind = "" if ok else f" ({type(value).__name__})"
        raise FCNError(f"{what} must be a number > 0, got {value!r}{kind}")
    return float(value)
