"""Model registry: every architecture is registered by name and built by one factory."""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, TypeVar

from fcn_deploy.errors import FCNError

_REGISTRY: dict[str, Callable[..., Any]] = {}

T = TypeVar("T")


def register_model(name: str) -> Callable[[T], T]:
    """Class/function decorator: make ``create_model(name, ...)`` build it."""

    def decorator(builder: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models(*, multi: bool = True) -> list[str]:
    """Names accepted by :func:`create_model`, sorted.

    ``multi=False`` leaves out the nets with several inputs or heads (SIFT Flow, NYUD fusion),
    for code that feeds one image and reads one score tensor (the pipeline takes every net).
    """
    if multi:
        return sorted(_REGISTRY)
    return sorted(name for name, builder in _REGISTRY.items()
                  if not getattr(builder, "head_names", ())
                  and len(getattr(builder, "input_channels", {"image": 3})) == 1)


def check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise FCNError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return num_classes


def check_width(width: Any) -> float:
    if (isinstance(width, bool) or not isinstance(width, (int, float))
            or not math.isfinite(width) or width <= 0):
        raise FCNError(f"width must be a finite number > 0 (channel multiplier, 1.0 = the "
                       f"reference net), got {width!r}")
    return float(width)


def create_model(name: str, *, num_classes: int | None = None, width: float = 1.0,
                 learn_upsampling: bool = False, **kwargs: Any):
    """Build the registered FCN ``name`` (weights initialised for training from scratch).

    ``num_classes`` None: the architecture's own default (21 for the VOC nets, 33 for SIFT
    Flow's semantic head, 40 for NYUDv2). ``width`` multiplies every channel count (1.0 = the reference net); ``learn_upsampling``
    makes the intermediate upsampling layers (upscore2, upscore_pool4) trainable as in the paper;
    the final one stays bilinear and frozen, so it changes nothing for the single-upsampling nets
    (FCN-32s, FCN-AlexNet, FCN-GoogLeNet).
    """
    if name not in _REGISTRY:
        raise FCNError(f"unknown model {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    if num_classes is not None:
        kwargs["num_classes"] = check_num_classes(num_classes)
    width = check_width(width)
    if not isinstance(learn_upsampling, bool):
        raise FCNError(f"learn_upsampling must be True or False, got {learn_upsampling!r}")
    builder = _REGISTRY[name]
    params = inspect.signature(builder).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        accepted = [p for p in params if p not in ("self",)]
        raise FCNError(f"model {name!r} does not take {', '.join(unknown)}; "
                       f"accepted arguments: {', '.join(accepted)}")
    return builder(width=width, learn_upsampling=learn_upsampling, **kwargs)
