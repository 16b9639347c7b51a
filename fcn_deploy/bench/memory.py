"""Peak memory of one image, whole vs tiled: each run in a fresh process, measured as its RSS.

Python's tracemalloc does not see ONNX Runtime's or TensorRT's allocations, so every mode runs
in a child process (``python -m fcn_deploy.bench.memory``) that opens the model, notes its
resident memory, segments one random image of the size asked and reports ``ru_maxrss`` (the
process's peak resident set) and the time of the predict() call. A whole-image run that the
Segmenter refuses for lack of memory is reported with the refusal, not run.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.bench.artifact import segmenter_inputs
from fcn_deploy.bench.report import Column, markdown_table
from fcn_deploy.errors import FCNError
from fcn_deploy.runtime.memory import peak_rss_bytes
from fcn_deploy.runtime.registry import default_backend, thread_options
from fcn_deploy.runtime.segmenter import Segmenter
from fcn_deploy.tiling import plan_tiles


@dataclass
class MemoryRecord:
    """One mode on one image size; bytes are resident memory (RSS)."""

    mode: str  # "whole" or "tiled"
    height: int
    width: int
    tile: int | None = None
    tiles: int = 1
    model_rss: int = 0  # after opening the model and one 64x64 warm-up, before the image
    peak_rss: int = 0  # ru_maxrss at the end
    estimate: int | None = None  # the graph's activation estimate for one whole pass
    seconds: float | None = None
    refused: str = ""


MEMORY_COLUMNS = [
    Column("mode", "mode"), Column("image", "image"), Column("tiles", "tiles"),
    Column("peak_rss", "peak RSS", lambda b: f"{b / 2**30:.2f} GiB"),
    Column("model_rss", "RSS before the image", lambda b: f"{b / 2**30:.2f} GiB"),
    Column("estimate", "graph estimate (whole pass)", lambda b: f"{b / 2**30:.2f} GiB"),
    Column("seconds", "time", "{:.1f} s"), Column("refused", "refused"),
]


def measure_memory(path: str | Path, *, height: int, width: int, tile: int,
                   backend: str | None = None, threads: int | None = None,
                   device: str | None = None, timeout: float = 3600) -> list[MemoryRecord]:
    """Whole-image and tiled runs of one ``height`` x ``width`` image, each in a new process."""
    records = []
    for mode in ("whole", "tiled"):
        job = {"path": str(path), "height": height, "width": width, "backend": backend,
               "threads": threads, "device": device, "tile": 0 if mode == "whole" else tile}
        proc = subprocess.run([sys.executable, "-m", "fcn_deploy.bench.memory", json.dumps(job)],
                              capture_output=True, text=True, timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode == 2 and proc.stderr.startswith("error: "):  # the child's FCNError
            raise FCNError(proc.stderr[len("error: "):].strip())
        if proc.returncode != 0 or not lines:
            raise FCNError(f"the {mode} memory run of {path} at {height}x{width} failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        records.append(MemoryRecord(**json.loads(lines[-1])))
    return records


def memory_markdown(records: Sequence[MemoryRecord]) -> str:
    rows = [dict(asdict(r), image=f"{r.height}x{r.width}") for r in records]
    return markdown_table(rows, MEMORY_COLUMNS)


def _child(job: dict[str, Any]) -> MemoryRecord:
    import numpy as np

    backend = job["backend"] or default_backend(Path(job["path"]))
    seg = Segmenter.open(job["path"], backend=backend, device=job["device"],
                         **thread_options(backend, job["threads"]))
    height, width, tile = job["height"], job["width"], job["tile"]
    warm, warm_others = segmenter_inputs(seg, (1, 3, 64, 64))  # every input of the net
    seg.predict_batch(warm, tile=0, **warm_others)  # libraries and threads loaded
    record = MemoryRecord(mode="whole" if tile == 0 else "tiled", height=height, width=width,
                          tile=tile or None, model_rss=_current_rss())
    if len(seg.input_specs) == 1:
        image, others = np.random.default_rng(0).integers(0, 256, (height, width, 3),
                                                          dtype=np.uint8), {}
    else:
        batch, others = segmenter_inputs(seg, (1, 3, height, width))
        image, others = batch[0], {name: data[0] for name, data in others.items()}
    record.estimate = seg.runner.activation_bytes(
        (1, 3, height, width) if seg.meta.input_layout == "NCHW" else (1, height, width, 3))
    if tile:
        record.tiles = len(plan_tiles(height, width, tile, seg.tile_geometry))
    start = time.perf_counter()
    try:
        seg.predict(image, tile=tile, **others)
        record.seconds = time.perf_counter() - start
    except FCNError as exc:
        record.refused = str(exc)
    record.peak_rss = peak_rss_bytes()
    return record


def _current_rss() -> int:
    """Resident memory now (Linux /proc; the peak so far elsewhere)."""
    import os

    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


if __name__ == "__main__":  # the child process of measure_memory
    try:
        print(json.dumps(asdict(_child(json.loads(sys.argv[1])))))
    except FCNError as exc:  # a bad option or model: the parent shows this line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
