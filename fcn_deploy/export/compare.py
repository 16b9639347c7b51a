"""What a precision change does to accuracy: two ONNX graphs on one labelled dataset.

Both graphs run in ONNX Runtime (CPU) on every image at its own size, preprocessed with each
graph's own metadata (mean, channel order). Reported: the fraction of pixels where their label
maps agree, and each graph's mean IU against the ground truth (one confusion matrix over the whole
set, as in the paper). Used for FP16 here and reusable for INT8.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.errors import FCNError


@dataclass
class CompareReport:
    name_a: str
    name_b: str
    images: int
    pixels: int
    agreement: float   # fraction of pixels with the same label in a and b
    miou_a: float
    miou_b: float

    @property
    def miou_change(self) -> float:
        return self.miou_b - self.miou_a

    def summary(self) -> str:
        return (f"{self.name_b} vs {self.name_a} on {self.images} images ({self.pixels} px): "
                f"label agreement {100 * self.agreement:.3f}%, mean IU "
                f"{100 * self.miou_a:.2f} -> {100 * self.miou_b:.2f} "
                f"({100 * self.miou_change:+.2f} points)")

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.name_a, "b": self.name_b, "images": self.images, "pixels": self.pixels,
                "agreement": self.agreement, "miou_a": self.miou_a, "miou_b": self.miou_b,
                "miou_change": self.miou_change}


class _Graph:
    """One ONNX graph in ONNX Runtime, giving a label map per image."""

    def __init__(self, path, threads: int | None):
        from fcn_deploy.export.verify import _session
        from fcn_deploy.meta import read_onnx_meta

        self.path = Path(path)
        self.meta = read_onnx_meta(self.path)
        self.session = _session(self.path, threads=threads)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        if "labels" not in self.outputs and "scores" not in self.outputs:
            raise FCNError(f"{self.path} has neither a 'labels' nor a 'scores' output")

    def labels(self, image_bgr: np.ndarray) -> np.ndarray:
        from fcn_deploy.preprocess import preprocess

        x = preprocess(image_bgr, self.meta.mean, channel_order=self.meta.channel_order)[None]
        want = "labels" if "labels" in self.outputs else "scores"
        (out,) = self.session.run([want], {self.input: x})
        return (out if want == "labels" else out.argmax(axis=1))[0].astype(np.uint8)


def compare_onnx(a, b, dataset, *, threads: int | None = None, limit: int | None = None,
                 progress: bool = False) -> CompareReport:
    """Label agreement of graphs ``a`` and ``b`` and each one's mean IU on ``dataset``.

    ``dataset`` is a dataset object (``__len__``/``__getitem__`` -> Sample with image and label)
    or a spec for ``fcn_deploy.datasets.create_dataset`` such as ``"synthetic:20"``.
    """
    from fcn_deploy.metrics import ConfusionMatrix

    if isinstance(dataset, str):
        from fcn_deploy.datasets import create_dataset

        dataset = create_dataset(dataset)
    graph_a, graph_b = _Graph(a, threads), _Graph(b, threads)
    if graph_a.meta.num_classes != graph_b.meta.num_classes:
        raise FCNError(f"{a} has {graph_a.meta.num_classes} classes but {b} has "
                       f"{graph_b.meta.num_classes}: not the same model")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise FCNError("the evaluation dataset is empty; expected at least one labelled image")
    num_classes = graph_a.meta.num_classes
    ignore = getattr(dataset, "ignore_label", graph_a.meta.ignore_label)
    cm_a = ConfusionMatrix(num_classes, ignore_label=ignore)
    cm_b = ConfusionMatrix(num_classes, ignore_label=ignore)
    same = pixels = 0
    indices = range(count)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="compare", unit="img", leave=False)
    for i in indices:
        sample = dataset[i]
        if sample.label is None:
            raise FCNError(f"dataset image {sample.name!r} has no label; comparing accuracy "
                           "needs a labelled dataset")
        pred_a, pred_b = graph_a.labels(sample.image), graph_b.labels(sample.image)
        same += int(np.count_nonzero(pred_a == pred_b))
        pixels += pred_a.size
        cm_a.update(sample.label, pred_a)
        cm_b.update(sample.label, pred_b)
    return CompareReport(name_a=Path(a).name, name_b=Path(b).name, images=count, pixels=pixels,
                         agreement=same / pixels, miou_a=float(cm_a.compute().mean_iu),
                         miou_b=float(cm_b.compute().mean_iu))
