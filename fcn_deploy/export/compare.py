"""What a precision change does to accuracy: the two-graph report of fcn-export --eval-dataset.

:class:`CompareReport` holds the fraction of pixels where two graphs' label maps agree and each
graph's mean IU against the ground truth (one confusion matrix over the whole set, as in the
paper). It is filled by :func:`fcn_deploy.evaluate.compare_onnx`, one floor up: measuring runs
the graphs through the runtime, which the export stage does not import (docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass
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
    #: a multi-head net's head these figures are of (its first, as fcn-eval's headline); ""
    #: for a single-head net
    head: str = ""

    @property
    def miou_change(self) -> float:
        return self.miou_b - self.miou_a

    def summary(self) -> str:
        head = f", head {self.head}" if self.head else ""
        return (f"{self.name_b} vs {self.name_a} on {self.images} images ({self.pixels} px"
                f"{head}): "
                f"label agreement {100 * self.agreement:.3f}%, mean IU "
                f"{100 * self.miou_a:.2f} -> {100 * self.miou_b:.2f} "
                f"({100 * self.miou_change:+.2f} points)")

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.name_a, "b": self.name_b, "images": self.images, "pixels": self.pixels,
                "agreement": self.agreement, "miou_a": self.miou_a, "miou_b": self.miou_b, "head": self.head,
                "miou_change": self.miou_change}
