"""fcn-segment: segment image files or folders with a model.pt, .onnx or .plan.

    fcn-segment --engine fcn8s.onnx photos/ extra.jpg -o out/ --overlay --scores

Writes ``<name>.png`` (VOC-style palette PNG of class indices), ``<name>_overlay.png`` (class
colours over the image plus a legend) with --overlay, ``<name>_scores.npy`` (float32 CxHxW) with
--scores. A bad image is reported by name and the rest continue; the exit status is 1 when any
image failed, 0 otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from fcn_deploy.cli.common import (add_device_option, add_threads_option, add_tile_options,
                                   check_tile_options, run_main)
from fcn_deploy.errors import FCNError


def build_parser() -> argparse.ArgumentParser:
    from fcn_deploy.runtime.registry import list_backends

    p = argparse.ArgumentParser(
        prog="fcn-segment", allow_abbrev=False,
        description="Segment images with an FCN model (model.pt, .onnx or TensorRT .plan).")
    p.add_argument("--engine", "-m", "--model", dest="engine", type=Path, required=True,
                   help="model file: .plan (TensorRT), .onnx or model.pt")
    p.add_argument("images", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--overlay", action="store_true",
                   help="also write <name>_overlay.png: colours over the image + class legend")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay opacity 0..1 (default 0.5)")
    p.add_argument("--no-legend", action="store_true", help="overlays without the legend panel")
    p.add_argument("--scores", action="store_true",
                   help="also write <name>_scores.npy (float32 CxHxW class scores)")
    p.add_argument("--backend", choices=list_backends(), default=None,
                   help="runtime backend (default: from the model file and what is installed)")
    p.add_argument("--recursive", action="store_true", help="look for images in subfolders too")
    add_device_option(p)
    add_threads_option(p)
    add_tile_options(p)
    return p


def collect_images(paths: Sequence[Path], *, recursive: bool = False) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Expand files and folders into ``(image path, output stem)`` pairs, plus missing paths.

    Files in a folder keep their path relative to it (``sub/a.jpg`` -> ``sub/a``); clashing
    stems get ``_2``, ``_3``...
    """
    from fcn_deploy.imageio import IMAGE_EXTENSIONS

    found: list[tuple[Path, str]] = []
    missing: list[tuple[Path, str]] = []
    used: set[str] = set()

    def add(path: Path, stem: str) -> None:
        unique, n = stem, 2
        while unique in used:
            unique, n = f"{stem}_{n}", n + 1
        used.add(unique)
        found.append((path, unique))

    for path in paths:
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in path.glob(pattern)
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            for f in files:
                add(f, f.relative_to(path).with_suffix("").as_posix())
        elif path.is_file():
            add(path, path.stem)
        else:
            missing.append((path, "does not exist"))
    return found, missing


def _main(argv: Sequence[str] | None) -> int:
    import numpy as np
    from tqdm import tqdm

    from fcn_deploy.fileio import atomic_path
    from fcn_deploy.imageio import read_image, write_image, write_label_png
    from fcn_deploy.runtime.registry import default_backend, thread_options
    from fcn_deploy.runtime.segmenter import Segmenter

    args = build_parser().parse_args(argv)
    check_tile_options(args)
    if not 0.0 <= args.opacity <= 1.0:
        raise FCNError(f"--opacity must be between 0 and 1, got {args.opacity}")
    images, failures = collect_images(args.images, recursive=args.recursive)
    missing = len(failures)
    if not images and not failures:
        raise FCNError(f"no images found in {', '.join(map(str, args.images))}")
    out_dir = args.output
    if out_dir.exists() and not out_dir.is_dir():
        raise FCNError(f"output {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    backend = args.backend or default_backend(args.engine)
    seg = Segmenter.open(args.engine, backend=backend, device=args.device,
                         **thread_options(backend, args.threads))
    for path, why in failures:
        print(f"error: {path}: {why}", file=sys.stderr)
    latencies: list[float] = []
    with seg:
        if args.scores and not seg.has_scores:
            raise FCNError(f"--scores: {args.engine} has only a 'labels' output; export the model "
                           "with scores to write them")
        bar = tqdm(images, unit="img", desc="segmenting", file=sys.stderr,
                   disable=None)  # shown on a terminal, silent in logs
        for path, stem in bar:
            try:
                image = read_image(path)
                start = time.perf_counter()
                result = seg.predict(image, scores=args.scores, tile=args.tile,
                                     max_pixels=args.max_pixels)
                latencies.append(time.perf_counter() - start)
                labels, scores = result if args.scores else (result, None)
                target = out_dir / f"{stem}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                write_label_png(target, labels, seg.palette)
                if args.overlay:
                    write_image(out_dir / f"{stem}_overlay.png",
                                seg.overlay(image, labels, opacity=args.opacity,
                                            legend=not args.no_legend))
                if scores is not None:
                    with atomic_path(out_dir / f"{stem}_scores.npy", suffix=".npy") as tmp:
                        np.save(tmp, scores.astype(np.float32))
            except FCNError as exc:
                failures.append((path, str(exc)))
                tqdm.write(f"error: {path}: {exc}", file=sys.stderr)

    total = len(images) + missing
    print(f"segmented {len(latencies)} of {total} images with {seg.backend} into {out_dir}")
    if latencies:
        ms = [t * 1000.0 for t in latencies]
        print(f"latency per image (preprocess + inference + labels): median "
              f"{statistics.median(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms, "
              f"min {min(ms):.1f} ms, max {max(ms):.1f} ms (first image includes warm-up)")
    if failures:
        print(f"{len(failures)} failed: " + ", ".join(str(p) for p, _ in failures), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
