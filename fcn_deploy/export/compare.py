"""What a precision change does to accuracy: two ONNX graphs on one labelled dataset.

Both graphs run in ONNX Runtime (CPU) on every image at its own size, preprocessed with each
graph's own metadata (mean, channel order). Reported: the fraction of pixels where their label
maps agree, and each graph's mean IU against the ground truth (one confusion matrix over the whole
set, as in the paper). A two-graph view of ``fcn_deploy.evaluate.compare_models``, which does the
work (fcn-eval uses the same code for N artifacts on any backend).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def compare_onnx(a, b, dataset, *, threads: int | None = None, limit: int | None = None,
                 progress: bool = False) -> CompareReport:
    """Label agreement of graphs ``a`` and ``b`` and each one's mean IU on ``dataset``.

    ``dataset`` is a dataset object (``__len__``/``__getitem__`` -> Sample with image and label)
    or a spec for ``fcn_deploy.datasets.create_dataset`` such as ``"synthetic:20"``. The work is
    ``fcn_deploy.evaluate.compare_models`` on ONNX Runtime's CPU provider, with ``a`` as the
    reference; this keeps the two-graph summary the export report prints.
    """
    from fcn_deploy.evaluate import compare_models  # lazy: evaluate imports the runtime

    report = compare_models([a, b], dataset, backend="onnxruntime", device="cpu",
                            max_images=limit, threads=threads, progress=progress)
    ref, other = report.results
    return CompareReport(name_a=Path(a).name, name_b=Path(b).name, images=report.num_images,
                         pixels=other.agreement_pixels, agreement=float(other.agreement),
                         miou_a=float(ref.metrics.mean_iu), miou_b=float(other.metrics.mean_iu))
