"""The files fcn-segment writes for one image, defined once so every runner of it (the local
loop, Ray actors) writes byte-identical results: ``<stem>.png`` (palette PNG of class indices),
``<stem>_overlay.png`` (colours over the image, optional legend), ``<stem>_scores.npy``. A
multi-head net writes each head's files with the head's name after the stem
(``<stem>_<head>.png``, ``<stem>_<head>_overlay.png``, ``<stem>_<head>_scores.npy``), each in
that head's palette."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import RunFiles, atomic_path
from fcn_deploy.imageio import write_image, write_label_png


@dataclass(frozen=True)
class SegmentOutputs:
    """Which files to write per image: the label PNG always, overlay and scores on request;
    ``heads``: a multi-head net's heads (one set of files each), empty for a single head."""

    overlay: bool = False
    opacity: float = 0.5
    legend: bool = True
    scores: bool = False
    heads: tuple[str, ...] = ()

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
                  recursive: bool, command: str = "fcn-segment",
                  extra_inputs: Mapping[str, Sequence[Path]] | None = None):
        """The plan (fileio.RunFiles) of a segmentation run: the model (None for a served
        one), the scanned folders, the images (and ``extra_inputs``: {input name: files}, a
        multi-input net's other inputs) and every file written for them in ``out_dir``.
        Every runner (the local loop, Ray) checks it before any work."""
        plan = RunFiles(command)
        if model is not None:
            plan.read_model("model", Path(model))
        for path in map(Path, inputs):
            if path.is_dir():
                plan.read_folder("input folder", path, recursive=recursive)
        for path, _ in images:
            plan.read("image", path)
        for name, files in (extra_inputs or {}).items():
            for path in files:
                plan.read(f"{name} input", path)
        plan.write_folder("output folder", out_dir)
        for path, stem in images:
            for out in self.paths(Path(out_dir), stem):
                plan.write(f"output of {Path(path).name}", out)
        return plan

    def paths(self, out_dir: Path, stem: str) -> list[Path]:
        """Every file written for ``stem`` (all exist = the image is done)."""
        out = []
        for base in ([f"{stem}_{head}" for head in self.heads] or [stem]):
            out.append(out_dir / f"{base}.png")
            if self.overlay:
                out.append(out_dir / f"{base}_overlay.png")
            if self.scores:
                out.append(out_dir / f"{base}_scores.npy")
        return out

    def write(self, seg, image: np.ndarray, labels: np.ndarray | Mapping[str, np.ndarray],
              scores: np.ndarray | Mapping[str, np.ndarray] | None, out_dir: Path,
              stem: str) -> None:
        """Write the files of one image (each atomically); ``seg`` gives palette and overlay.
        A multi-head net's ``labels`` / ``scores`` are {head: array}, written per head."""
        if not isinstance(labels, Mapping):
            self._write_head(seg, image, labels, scores, out_dir, stem, head=None)
            return
        for head, head_labels in labels.items():
            self._write_head(seg, image, head_labels, (scores or {}).get(head), out_dir,
                             f"{stem}_{head}", head=head)

    def _write_head(self, seg, image: np.ndarray, labels: np.ndarray,
                    scores: np.ndarray | None, out_dir: Path, base: str,
                    head: str | None) -> None:
        target = out_dir / f"{base}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_label_png(target, labels, seg.head(head).palette)
        if self.overlay:
            write_image(out_dir / f"{base}_overlay.png",
                        seg.overlay(image, labels, opacity=self.opacity, legend=self.legend,
                                    head=head))
        if self.scores and scores is not None:
            with atomic_path(out_dir / f"{base}_scores.npy", suffix=".npy") as tmp:
                np.save(tmp, scores.astype(np.float32))


def check_input_folders(model: str | os.PathLike, meta, folders: Mapping[str, Path]) -> None:
    """fcn-segment's ``--input NAME=DIR``: one folder for each input after the first (``meta``:
    the net's ModelMeta), by name; FCNError naming what the net takes otherwise."""
    expected = meta.input_names[1:]
    if sorted(folders) != sorted(expected):
        takes = (f"its other inputs {', '.join(expected)} (--input "
                 f"{' --input '.join(n + '=DIR' for n in expected)})" if expected
                 else "no input besides the images")
        raise FCNError(f"{model} ({meta.arch}) takes {takes}; got "
                       f"{', '.join(f'--input {n}=' for n in folders) or 'no --input'}")
