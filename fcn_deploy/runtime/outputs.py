"""The files fcn-segment writes for one image, defined once so every runner of it (the local
loop, Ray actors) writes byte-identical results: ``<stem>.png`` (palette PNG of class indices),
``<stem>_overlay.png`` (colours over the image, optional legend), ``<stem>_scores.npy``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import RunFiles, atomic_path
from fcn_deploy.imageio import write_image, write_label_png


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

    def run_files(self, *, model: str | os.PathLike | None,
                  inputs: Sequence[str | os.PathLike],
                  images: Sequence[tuple[Path, str]], out_dir: str | os.PathLike,
                  recursive: bool, command: str = "fcn-segment"):
        """The plan (fileio.RunFiles) of a segmentation run: the model (None for a served
        one), the scanned folders, the images and every file written for them in ``out_dir``.
        Every runner (the local loop, Ray) checks it before any work."""
        plan = RunFiles(command)
        if model is not None:
            plan.read_model("model", Path(model))
        for path in map(Path, inputs):
            if path.is_dir():
                plan.read_folder("input folder", path, recursive=recursive)
        for path, _ in images:
            plan.read("image", path)
        plan.write_folder("output folder", out_dir)
        for path, stem in images:
            for out in self.paths(Path(out_dir), stem):
                plan.write(f"output of {Path(path).name}", out)
        return plan

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
        target = out_dir / f"{stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_label_png(target, labels, seg.palette)
        if self.overlay:
            write_image(out_dir / f"{stem}_overlay.png",
                        seg.overlay(image, labels, opacity=self.opacity, legend=self.legend))
        if self.scores and scores is not None:
            with atomic_path(out_dir / f"{stem}_scores.npy", suffix=".npy") as tmp:
                np.save(tmp, scores.astype(np.float32))
