"""Segmentation datasets shared by training, evaluation and INT8 calibration (numpy only).

Every dataset is an indexable sequence of :class:`Sample` (image uint8 HxWx3 BGR, label uint8 HxW
or None, name) with ``num_classes``, ``class_names``, ``palette`` and ``ignore_label`` (255).
:func:`create_dataset` builds one from a spec string, which is what commands take.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

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
    "list_images", "SPEC_FORMS", "SiftFlowSegmentation", "NYUDSegmentation",
    "SyntheticTwoHead", "SyntheticRGBD",
]

#: The accepted spec strings, as shown in error messages and help texts.
SPEC_FORMS = (
    "voc:<VOCdevkit or VOCdevkit/VOC2012>[:<image set name or list file>]  (default set: val)",
    "sbd:<benchmark_RELEASE or its dataset/>[:train|val|<list file>]  (default: train)",
    "folder:<images dir>[,<masks dir>]  (masks matched by file stem; none = unlabelled)",
    "synthetic[:<number of images>][:key=value,...]  (SyntheticShapes, default 200 images, "
    "seed 0; e.g. synthetic:50:seed=1000,min_size=96)",
    "siftflow:<SiftFlowDataset>[:trainval|test|<list file>]  (default: trainval; heads sem, geo)",
    "nyud:<data/nyud>[:train|val|test|trainval|<list file>]  (default: train; inputs image, "
    "hha, depth)",
    "synthetic-twohead[...] / synthetic-rgbd[...]  (as synthetic, plus a geo head / hha and "
    "depth inputs)",
)
#: The synthetic kinds by scheme.
_SYNTHETIC = {"synthetic": SyntheticShapes, "synthetic-twohead": SyntheticTwoHead,
              "synthetic-rgbd": SyntheticRGBD}


def _split_optional(rest: str, sep: str) -> tuple[str, str | None]:
    """Split ``path<sep>option`` from the right, unless the whole string is an existing path."""
    if sep in rest and not Path(rest).exists():
        head, tail = rest.rsplit(sep, 1)
        return head, (tail or None)
    return rest, None


_DATASET_TYPES = (VOCSegmentation, SBDSegmentation, FolderDataset, SyntheticShapes,
                  SiftFlowSegmentation, NYUDSegmentation)


def _options(cls: type) -> list[str]:
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind == inspect.Parameter.KEYWORD_ONLY]


def _construct(cls: type, args: tuple, kwargs: dict[str, Any], spec: str) -> SegmentationDataset:
    accepted = _options(cls)
    known = sorted({name for t in _DATASET_TYPES for name in _options(t)})
    unknown = sorted(k for k in kwargs if k not in known)
    if unknown:
        raise FCNError(f"dataset option(s) {', '.join(unknown)} not understood (for {spec!r}); "
                       f"dataset options are {', '.join(known)}")
    return cls(*args, **{k: v for k, v in kwargs.items() if k in accepted and v is not None})


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
        raise FCNError(f"dataset spec {spec!r} is empty; expected one of: " + "; ".join(SPEC_FORMS))
    scheme, _, rest = spec.partition(":")
    scheme = scheme.strip().lower()
    if scheme == "voc" and rest:
        root, image_set = _split_optional(rest, ":")
        if image_set is not None:
            kwargs = {**kwargs, "image_set": image_set}
        return _construct(VOCSegmentation, (root,), kwargs, spec)
    if scheme == "sbd" and rest:
        root, image_set = _split_optional(rest, ":")
        if image_set is not None:
            kwargs = {**kwargs, "image_set": image_set}
        return _construct(SBDSegmentation, (root,), kwargs, spec)
    if scheme in ("siftflow", "nyud") and rest:
        root, image_set = _split_optional(rest, ":")
        if image_set is not None:
            kwargs = {**kwargs, "image_set": image_set}
        cls = SiftFlowSegmentation if scheme == "siftflow" else NYUDSegmentation
        return _construct(cls, (root,), kwargs, spec)
    if scheme == "folder" and rest:
        images, masks = _split_optional(rest, ",")
        return _construct(FolderDataset, (images, masks), kwargs, spec)
    if scheme in _SYNTHETIC:
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
        return _construct(_SYNTHETIC[scheme], (), kwargs, spec)
    raise FCNError(f"dataset spec {spec!r} is not understood; expected one of: "
                   + "; ".join(SPEC_FORMS))
