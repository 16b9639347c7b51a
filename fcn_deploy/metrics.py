"""FCN's segmentation metrics from one confusion matrix accumulated over a whole set.

``n[i, j]`` counts pixels of true class ``i`` predicted as ``j`` (rows truth, columns prediction);
pixels labelled ``ignore_label`` (255) are not counted. With ``t_i = sum_j n_ij`` (truth pixels of
class i) and ``p_i = sum_j n_ji`` (pixels predicted as i):

* pixel accuracy        = sum_i n_ii / sum_i t_i
* mean accuracy         = nanmean_i  n_ii / t_i
* mean IU               = nanmean_i  n_ii / (t_i + p_i - n_ii)
* frequency weighted IU = (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + p_i - n_ii)

Classes whose ratio is 0/0 are NaN and skipped by the mean. So a class absent from both truth and
prediction is skipped everywhere; a class present only in the *prediction* (t_i = 0, p_i > 0) has
accuracy 0/0 = NaN (skipped) but IU 0/p_i = 0, which counts and lowers mean IU — false positives of
a class that is not there are penalised, as in the reference's ``score.py``. In fw IU that class
has weight t_i = 0 and contributes nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fcn_deploy.constants import IGNORE_LABEL
from fcn_deploy.errors import FCNError


@dataclass
class SegMetrics:
    """Scores in [0, 1]; per-class arrays have NaN where a ratio is 0/0 (see module docstring)."""

    pixel_accuracy: float
    mean_accuracy: float
    mean_iu: float
    fw_iu: float
    per_class_iu: np.ndarray
    per_class_accuracy: np.ndarray
    num_pixels: int

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (floats and lists; NaN becomes None, i.e. JSON null)."""
        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "pixel_accuracy": num(self.pixel_accuracy),
            "mean_accuracy": num(self.mean_accuracy),
            "mean_iu": num(self.mean_iu),
            "fw_iu": num(self.fw_iu),
            "per_class_iu": [num(x) for x in self.per_class_iu],
            "per_class_accuracy": [num(x) for x in self.per_class_accuracy],
            "num_pixels": int(self.num_pixels),
        }


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _check_int(array: Any, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "uib":
        raise FCNError(f"{what} has dtype {array.dtype}; expected an integer array of class "
                       "indices (take the argmax of scores first)")
    return array


def _values(array: np.ndarray, mask: np.ndarray, limit: int = 8) -> str:
    bad = np.unique(array[mask])
    shown = ", ".join(str(int(v)) for v in bad[:limit])
    return shown + (f", ... ({bad.size} distinct)" if bad.size > limit else "")


class ConfusionMatrix:
    """Accumulates an int64 C x C confusion matrix (rows truth, columns prediction)."""

    def __init__(self, num_classes: int, *, ignore_label: int | None = None) -> None:
        if int(num_classes) < 1:
            raise FCNError(f"num_classes={num_classes}; expected at least 1")
        self.num_classes = int(num_classes)
        self.ignore_label = IGNORE_LABEL if ignore_label is None else int(ignore_label)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[...] = 0

    def update(self, label: Any, pred: Any) -> None:
        """Count one label map against one prediction (integer arrays of the same shape)."""
        label = _check_int(label, "label")
        pred = _check_int(pred, "prediction")
        if label.shape != pred.shape:
            raise FCNError(f"label shape {label.shape} and prediction shape {pred.shape} differ; "
                           "expected the same shape (predict at the image's full resolution)")
        c = self.num_classes
        label = label.ravel().astype(np.int64, copy=False)
        pred = pred.ravel().astype(np.int64, copy=False)
        bad_pred = (pred < 0) | (pred >= c)
        if bad_pred.any():
            raise FCNError(f"prediction values {_values(pred, bad_pred)} are out of range; "
                           f"expected class indices 0..{c - 1}")
        keep = label != self.ignore_label
        bad_label = keep & ((label < 0) | (label >= c))
        if bad_label.any():
            raise FCNError(f"label values {_values(label, bad_label)} are out of range; expected "
                           f"class indices 0..{c - 1} or {self.ignore_label} (ignore)")
        counts = np.bincount(label[keep] * c + pred[keep], minlength=c * c)
        self.matrix += counts.reshape(c, c)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts (e.g. from a worker) into this one; returns self."""
        if other.num_classes != self.num_classes or other.ignore_label != self.ignore_label:
            raise FCNError(f"cannot merge a confusion matrix of {other.num_classes} classes "
                           f"(ignore {other.ignore_label}) into one of {self.num_classes} classes "
                           f"(ignore {self.ignore_label})")
        self.matrix += other.matrix
        return self

    def compute(self) -> SegMetrics:
        """The four FCN metrics and per-class IU/accuracy of everything counted so far."""
        n = self.matrix.astype(np.float64)
        total = n.sum()
        if total == 0:
            raise FCNError("no labelled pixels were scored (nothing updated, or every label "
                           f"pixel was {self.ignore_label}); cannot compute metrics")
        diag = np.diag(n)
        truth = n.sum(axis=1)
        predicted = n.sum(axis=0)
        union = truth + predicted - diag
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.where(truth > 0, diag / truth, np.nan)
            iu = np.where(union > 0, diag / union, np.nan)
        present = truth > 0
        return SegMetrics(
            pixel_accuracy=float(diag.sum() / total),
            mean_accuracy=_nanmean(acc),
            mean_iu=_nanmean(iu),
            fw_iu=float((truth[present] * iu[present]).sum() / total),
            per_class_iu=iu,
            per_class_accuracy=acc,
            num_pixels=int(total),
        )


def format_table(metrics: SegMetrics, class_names: Sequence[str] | None = None) -> str:
    """Markdown table of per-class IU and accuracy (percent, 1 decimal; "-" where NaN)."""
    num = len(metrics.per_class_iu)
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num)]
    if len(names) != num:
        raise FCNError(f"{len(names)} class names for {num} classes; expected one name per class")

    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{100 * x:.1f}"

    lines = ["| class | IU (%) | accuracy (%) |", "|---|---:|---:|"]
    for i, name in enumerate(names):
        lines.append(f"| {i} {name} | {pct(metrics.per_class_iu[i])} | "
                     f"{pct(metrics.per_class_accuracy[i])} |")
    lines.append(f"| **mean** | **{pct(metrics.mean_iu)}** | **{pct(metrics.mean_accuracy)}** |")
    lines.append("")
    lines.append(f"pixel accuracy {pct(metrics.pixel_accuracy)} %, mean accuracy "
                 f"{pct(metrics.mean_accuracy)} %, mean IU {pct(metrics.mean_iu)} %, "
                 f"fw IU {pct(metrics.fw_iu)} % over {metrics.num_pixels} pixels")
    return "\n".join(lines) + "\n"
