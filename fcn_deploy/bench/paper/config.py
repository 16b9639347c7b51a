"""Settings of one paper-reproduction run (``fcn-bench --paper``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from fcn_deploy.bench.paper.facts import TABLE1_MODELS
from fcn_deploy.errors import FCNError
from fcn_deploy.ortsession import cap_threads
from fcn_deploy.timing import check_counts

SECTIONS = ("table1", "patchwise", "backends", "export", "scaling")
#: Models the backend and export comparisons run on (when they are among ``models``).
COMPARISON_MODELS = ("fcn8s_vgg16", "fcn_alexnet")
#: Models of the latency-against-size plot (when they are among ``models``).
SCALING_MODELS = ("fcn_alexnet", "fcn8s_vgg16", "fcn_googlenet")


@dataclass
class PaperConfig:
    """One reproduction run; None means the default (full run, or ``quick`` defaults).

    Full run: width 1 (the reference nets), 500x500, 20 timed runs after 2 warm-ups (the paper
    averaged 20 trials), latency curve at 250..1000 px with 3 runs per point. ``quick``: width
    1/16, 96x96 inputs (a 323x323 image, 4x4 grid, for section 3.1), 3 runs after 1 warm-up,
    curve at 64..128 px; checks structure, not speed.

    ``backend``: the backend of Table 1, section 3.1 and the latency curve (all the same one, so
    their ratios compare like with like); the backend comparison always runs every backend
    present. ``threads``: one thread count for every backend and for the peak (default: all
    cores). ``work_dir``: where exported graphs are kept (reused by a later run with the same
    settings); default a temporary folder removed at the end.
    """

    quick: bool = False
    models: Sequence[str] | None = None
    sections: Sequence[str] | None = None
    width: float | None = None
    size: int | None = None
    runs: int | None = None
    warmup: int | None = None
    scaling_sizes: Sequence[int] | None = None
    scaling_runs: int | None = None
    patch_grid: int | None = None
    shift_samples: int | None = None
    backend: str = "onnxruntime"
    threads: int | None = None
    calibration_images: int | None = None
    profile_runs: int | None = None
    work_dir: str | os.PathLike | None = None
    seed: int = 0
    progress: bool = True
    plots: bool = True
    command: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        q = self.quick
        # lazy: fcn_deploy.models imports torch; a config alone does not need it
        from fcn_deploy.models import list_models

        known = list_models()
        models = list(self.models or TABLE1_MODELS)
        bad = [m for m in models if m not in known]
        if bad:
            raise FCNError(f"unknown model(s) {', '.join(bad)}; valid names: {', '.join(known)}")
        self.models = models
        sections = list(self.sections or SECTIONS)
        bad = [s for s in sections if s not in SECTIONS]
        if bad:
            raise FCNError(f"unknown section(s) {', '.join(bad)}; choose from "
                           f"{', '.join(SECTIONS)}")
        self.sections = sections
        def pick(value, quick, full):
            return value if value is not None else (quick if q else full)

        self.width = float(pick(self.width, 1 / 16, 1.0))
        self.size = int(pick(self.size, 96, 500))
        self.runs = int(pick(self.runs, 3, 20))
        self.warmup = int(pick(self.warmup, 1, 2))
        check_counts(warmup=self.warmup, runs=self.runs)
        curve = pick(None, (64, 96, 128), (250, 375, 500, 750, 1000))
        self.scaling_sizes = [int(s) for s in (self.scaling_sizes or curve)]
        self.scaling_runs = int(pick(self.scaling_runs, 2, 3))
        check_counts(warmup=1, runs=self.scaling_runs)
        # Section 3.1's image: (grid - 1) * 32 + 227 gives a grid x grid AlexNet output; the paper
        # used 500x500 (a 10x10 grid), quick mode 4x4 (323x323).
        self.patch_grid = int(pick(self.patch_grid, 4, 10))
        self.shift_samples = int(pick(self.shift_samples, 2, 4))
        self.calibration_images = int(pick(self.calibration_images, 1, 2))
        self.profile_runs = int(pick(self.profile_runs, 1, 3))
        self.threads = int(cap_threads(self.threads) or os.cpu_count() or 1)
        if min(self.size, *self.scaling_sizes) < 32:
            raise FCNError("input sizes must be >= 32 px")
        if self.patch_grid < 1 or self.shift_samples < 1 or self.calibration_images < 1:
            raise FCNError("patch grid, shift samples and calibration images must be >= 1")
        if self.backend not in ("onnxruntime", "torch"):
            raise FCNError(f"--backend for the paper run must be onnxruntime or torch, got "
                           f"{self.backend!r} (TensorRT rows are added when it is available)")
        if self.work_dir is not None:
            self.work_dir = Path(self.work_dir)
            if not self.work_dir.is_dir():
                raise FCNError(f"work folder {self.work_dir} does not exist; create it first")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.size, self.size)

    @property
    def patch_image_size(self) -> int:
        """The paper's 500 for a 10x10 grid; otherwise the size whose grid is ``patch_grid``."""
        if self.patch_grid == 10:
            return 500
        return 227 + 32 * (self.patch_grid - 1)
