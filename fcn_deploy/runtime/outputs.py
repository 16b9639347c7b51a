"""The files fcn-segment writes for one image, defined once so every runner of it (the local
loop, Ray actors) writes byte-identical results: ``<stem>.png`` (palette PNG of class indices),
``<stem>_overlay.png`` (colours over the image, optional legend), ``<stem>_scores.npy``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcn_deploy.errors import FCNError


@dataclass(frozen=True)
class SegmentOutputs:
    """Which files to write per image: the label PNG always, overlay and scores on request."""

    overlay: bool = False
    opacity: float = 0.5
    legend: bool = True
    scores: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.opacity <= 1.0:
            raise FCNError(f"--opacity must be between 0 and 1, got {self.opacity}")

    @property
    def suffixes(self) -> list[str]:
        """What each image's stem gets appended (``.png``, ``_overlay.png``, ``_scores.npy``)."""
        return [p.name for p in self.paths(Path(), "")]

    def paths(self, out_dir: Path, stem: str) -> list[Path]:
        """Every file written for ``stem`` (all exist = the image is done)."""
        out = [out_dir / f"{stem}.png"]
        if self.overlay:
            out.append(out_dir / f"{stem}_overlay.png")
        if self.scores:
            out.append(out_dir / f"{stem}_scores.npy")
        return out

    def write(self, seg, image: np.ndarray, labels: np.ndarray, scores: np.ndarray | None,
              out_dir: Path, stem: str) -> None:
        """Write the files of one image (each atomically); ``seg`` gives palette and overlay."""
        from fcn_deploy.fileio import atomic_path
        from fcn_deploy.imageio import write_image, write_label_png

        target = out_dir / f"{stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_label_png(target, labels, seg.palette)
        if self.overlay:
            write_image(out_dir / f"{stem}_overlay.png",
                        seg.overlay(image, labels, opacity=self.opacity, legend=self.legend))
        if self.scores and scores is not None:
            with atomic_path(out_dir / f"{stem}_scores.npy", suffix=".npy") as tmp:
                np.save(tmp, scores.astype(np.float32))
