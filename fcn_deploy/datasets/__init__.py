"""Segmentation datasets shared by training, evaluation and INT8 calibration (numpy only).

Every dataset is an indexable sequence of :class:`Sample` (image uint8 HxWx3 BGR, label uint8 HxW
or None, name) with ``num_classes``, ``class_names``, ``palette`` and ``ignore_label`` (255).
:func:`create_dataset` builds one from a spec string, which is what commands take.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fcn_deploy.datasets.base import (Sample, SegmentationDataset, check_same_size,
                                      validate_label)
from fcn_deploy.datasets.folder import FolderDataset, ImageFolder, list_images
from fcn_deploy.datasets.sbd import SBDSegmentation, read_sbd_label
from fcn_deploy.datasets.nyud import NYUDSegmentation
from fcn_deploy.datasets.siftflow import SiftFlowSegmentation
from fcn_deploy.datasets.synthetic import (SHAPES, SyntheticRGBD, SyntheticShapes,
                                           SyntheticTwoHead, stride_oracle)
from fcn_deploy.datasets.voc import VOCSegmentation, resolve_voc_root, write_voc_layout
from fcn_deploy.errors import FCNError

__all__ = [
    "Sample", "SegmentationDataset", "VOCSegmentation", "SBDSegmentation", "FolderDataset",
    "ImageFolder", "SyntheticShapes", "SHAPES", "create_dataset", "write_voc_layout",
    "stride_oracle", "validate_label", "check_same_size", "read_sbd_label", "resolve_voc_root",
    "list_images", "SPEC_FORMS", "DatasetKind", "register_dataset", "spec_forms",
    "SiftFlowSegmentation", "NYUDSegmentation", "SyntheticTwoHead", "SyntheticRGBD",
]

#: A spec parser: ``(text after "scheme:", caller's kwargs, whole spec) -> (args, kwargs)`` for
#: the dataset class's constructor.
SpecParser = Callable[[str, dict, str], tuple[tuple, dict]]


@dataclass(frozen=True)
class DatasetKind:
    """One ``scheme:...`` spec form and the class it builds."""

    scheme: str
    cls: type
    form: str  # as shown in error messages and help texts
    parse: SpecParser
    needs_rest: bool = True  # "scheme" alone is not a spec (unlike "synthetic")


_KINDS: dict[str, DatasetKind] = {}


def register_dataset(scheme: str, cls: type, form: str, *,
                     needs_rest: bool = True) -> Callable[[SpecParser], SpecParser]:
    """Decorator on a spec parser: make ``create_dataset("<scheme>:...")`` build ``cls``.

    The one way to add a dataset kind: its class (a :class:`SegmentationDataset`) and one
    registered parser; its keyword-only constructor options become dataset options.
    """
    def decorator(parse: SpecParser) -> SpecParser:
        if scheme in _KINDS and _KINDS[scheme].parse is not parse:
            raise ValueError(f"dataset scheme {scheme!r} is already registered")
        _KINDS[scheme] = DatasetKind(scheme, cls, form, parse, needs_rest)
        return parse

    return decorator


def spec_forms() -> tuple[str, ...]:
    """The accepted spec strings of every registered kind, in registration order."""
    return tuple(kind.form for kind in _KINDS.values())


def _split_optional(rest: str, sep: str) -> tuple[str, str | None]:
    """Split ``path<sep>option`` from the right, unless the whole string is an existing path."""
    if sep in rest and not Path(rest).exists():
        head, tail = rest.rsplit(sep, 1)
        return head, (tail or None)
    return rest, None


def _options(cls: type) -> list[str]:
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind == inspect.Parameter.KEYWORD_ONLY]


def _construct(cls: type, args: tuple, kwargs: dict[str, Any], spec: str) -> SegmentationDataset:
    accepted = _options(cls)
    known = sorted({name for kind in _KINDS.values() for name in _options(kind.cls)})
    unknown = sorted(k for k in kwargs if k not in known)
    if unknown:
        raise FCNError(f"dataset option(s) {', '.join(unknown)} not understood (for {spec!r}); "
                       f"dataset options are {', '.join(known)}")
    return cls(*args, **{k: v for k, v in kwargs.items() if k in accepted and v is not None})


def _root_and_image_set(rest: str, kwargs: dict, spec: str) -> tuple[tuple, dict]:
    root, image_set = _split_optional(rest, ":")
    if image_set is not None:
        kwargs = {**kwargs, "image_set": image_set}
    return (root,), kwargs


register_dataset("voc", VOCSegmentation,
                 "voc:<VOCdevkit or VOCdevkit/VOC2012>[:<image set name or list file>]  "
                 "(default set: val)")(_root_and_image_set)
register_dataset("sbd", SBDSegmentation,
                 "sbd:<benchmark_RELEASE or its dataset/>[:train|val|<list file>]  "
                 "(default: train)")(_root_and_image_set)


@register_dataset("folder", FolderDataset,
                  "folder:<images dir>[,<masks dir>]  (masks matched by file stem; none = "
                  "unlabelled)")
def _folder(rest: str, kwargs: dict, spec: str) -> tuple[tuple, dict]:
    images, masks = _split_optional(rest, ",")
    return (images, masks), kwargs


@register_dataset("synthetic", SyntheticShapes,
                  "synthetic[:<number of images>][:key=value,...]  (SyntheticShapes, default 200 "
                  "images, seed 0; e.g. synthetic:50:seed=1000,min_size=96)", needs_rest=False)
def _synthetic(rest: str, kwargs: dict, spec: str) -> tuple[tuple, dict]:
    count, _, extra = rest.partition(":")
    if count.strip():
        try:
            kwargs = {**kwargs, "num_images": int(count)}
        except ValueError:
            raise FCNError(f"dataset spec {spec!r}: {count!r} is not a number of images; "
                           "expected synthetic[:<number of images>][:key=value,...]") from None
    for item in filter(None, (part.strip() for part in extra.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in _options(SyntheticShapes):
            raise FCNError(f"dataset spec {spec!r}: {item!r} is not an option=value; "
                           f"synthetic options are {', '.join(_options(SyntheticShapes))}")
        try:
            kwargs = {**kwargs, key.strip(): int(value)}
        except ValueError:
            raise FCNError(f"dataset spec {spec!r}: {key.strip()} must be an integer, "
                           f"got {value!r}") from None
    return (), kwargs


register_dataset("siftflow", SiftFlowSegmentation,
                 "siftflow:<SiftFlowDataset>[:trainval|test|<list file>]  (default: trainval; "
                 "heads sem, geo)")(_root_and_image_set)
register_dataset("nyud", NYUDSegmentation,
                 "nyud:<data/nyud>[:train|val|test|trainval|<list file>]  (default: train; "
                 "inputs image, hha, depth)")(_root_and_image_set)
register_dataset("synthetic-twohead", SyntheticTwoHead,
                 "synthetic-twohead[...]  (as synthetic, plus a geometric head)",
                 needs_rest=False)(_synthetic)
register_dataset("synthetic-rgbd", SyntheticRGBD,
                 "synthetic-rgbd[...]  (as synthetic, plus hha and depth inputs)",
                 needs_rest=False)(_synthetic)

#: The built-in spec strings (spec_forms() also lists kinds registered later).
SPEC_FORMS = spec_forms()


def create_dataset(spec: str, **kwargs: Any) -> SegmentationDataset:
    """Build a dataset from a spec string (see ``SPEC_FORMS``); ``kwargs`` go to its constructor.

    Examples: ``voc:/data/VOCdevkit`` (VOC2012 val), ``voc:/data/VOCdevkit:train``,
    ``voc:/data/VOCdevkit:/lists/seg11valid.txt`` with ``year="2011"``, ``sbd:/data/benchmark_RELEASE``,
    ``folder:/data/images,/data/masks``, ``folder:/data/calib`` (label None), ``synthetic:64`` with
    ``seed=1, min_size=48``. The image set defaults to ``val`` for VOC because VOC is what the
    reference evaluates on (SBD, its training set, defaults to ``train``).

    Options are shared by all kinds so one set can serve a training and a validation spec: an
    option some other kind takes (``year`` given to ``sbd:``, ``seed`` to ``voc:``) is dropped, a
    None value means "default", and a name no dataset takes (a typo) raises FCNError.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise FCNError(f"dataset spec {spec!r} is empty; expected one of: " + "; ".join(spec_forms()))
    scheme, _, rest = spec.partition(":")
    kind = _KINDS.get(scheme.strip().lower())
    if kind is None or (kind.needs_rest and not rest):
        raise FCNError(f"dataset spec {spec!r} is not understood; expected one of: "
                       + "; ".join(spec_forms()))
    args, kwargs = kind.parse(rest, kwargs, spec)
    return _construct(kind.cls, args, kwargs, spec)
