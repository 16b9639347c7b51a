"""fcn-segment: segment image files or folders with a model.pt, .onnx or .plan.

    fcn-segment --engine fcn8s.onnx photos/ extra.jpg -o out/ --overlay --scores

Writes ``<name>.png`` (VOC-style palette PNG of class indices), ``<name>_overlay.png`` (class
colours over the image plus a legend) with --overlay, ``<name>_scores.npy`` (float32 CxHxW) with
--scores. A bad image is reported by name and the rest continue; the exit status is 1 when any
image failed, 0 otherwise.

A multi-input net (NYUDv2's colour + HHA or depth) takes its other inputs from folders,
``--input hha=DIR``, the file matched to each image by its stem (``DIR/<stem>.<any image
extension>``; a depth PNG is read as 16-bit millimetres). A multi-head net (SIFT Flow) writes
every file once per head, ``<name>_<head>.png`` and so on, each in its head's palette.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from fcn_deploy.cli.common import (add_device_option, add_int8_kernels_option, add_threads_option,
                                   add_tile_options, check_tile_options, model_location,
                                   run_main)
from fcn_deploy.cli.segment_ray import add_ray_options, maybe_run_ray, normalize_ray_argv
from fcn_deploy.errors import FCNError
from fcn_deploy.imageio import (collect_images, match_input_files,  # collect_images: still
                                read_image)  # importable from here as before
from fcn_deploy.runtime.outputs import SegmentOutputs, check_input_folders
from fcn_deploy.runtime.registry import (default_backend, int8_kernel_options, list_backends,
                                         thread_options, url_scheme)
from fcn_deploy.runtime.segmenter import Segmenter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-segment", allow_abbrev=False,
        description="Segment images with an FCN model (model.pt, .onnx or TensorRT .plan).")
    p.add_argument("--engine", "-m", "--model", dest="engine", type=model_location, required=True,
                   help="model file: .plan (TensorRT), .onnx or model.pt; or a served model's "
                        "URL: triton://host:8000/name (triton+grpc://host:8001/name for gRPC)")
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
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=DIR",
                   type=_named_folder,
                   help="another input of a multi-input net (e.g. hha=DIR, depth=DIR): the file "
                        "in DIR with each image's stem; repeat for every input after the first")
    add_device_option(p)
    add_threads_option(p)
    add_ray_options(p)
    add_int8_kernels_option(p)
    add_tile_options(p)
    return p


def _named_folder(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name.isidentifier() or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR (e.g. hha=data/hha), got {text!r}")
    if not Path(folder).is_dir():
        raise argparse.ArgumentTypeError(f"{name}: {folder} is not a folder")
    return name, Path(folder)


def _main(argv: Sequence[str] | None) -> int:
    from tqdm import tqdm

    args = build_parser().parse_args(normalize_ray_argv(argv))
    check_tile_options(args)
    folders = dict(args.inputs)
    if len(folders) != len(args.inputs):
        raise FCNError(f"--input names an input twice: {', '.join(n for n, _ in args.inputs)}")
    outputs = SegmentOutputs(overlay=args.overlay, opacity=args.opacity,
                             legend=not args.no_legend, scores=args.scores)
    images, failures = collect_images(args.images, recursive=args.recursive,
                                      suffixes=outputs.suffixes)
    missing = len(failures)
    if not images and not failures:
        raise FCNError(f"no images found in {', '.join(map(str, args.images))}")
    out_dir = args.output
    # Before any work, locally or on Ray: never write over an input or one output twice.
    plan = outputs.run_files(model=None if url_scheme(args.engine) else args.engine,
                             inputs=args.images, images=images, out_dir=out_dir,
                             recursive=args.recursive)
    plan.check(create=False)  # the output folder is made once the model has opened
    if (rc := maybe_run_ray(args)) is not None:  # ray_segment checks (and creates) on its own
        return rc

    backend = args.backend or default_backend(args.engine)
    seg = Segmenter.open(args.engine, backend=backend, device=args.device,
                         **thread_options(backend, args.threads),
                         **int8_kernel_options(backend, args.int8_kernels))
    # The output folder is created only once the model opened (a served one answered): a model
    # or server that fails leaves nothing behind.
    try:
        plan.check()
    except BaseException:
        seg.close()
        raise
    matched: dict[Path, dict[str, Path]] = {}
    with seg:
        check_input_folders(args.engine, seg.meta, folders)
        if seg.multi_head or folders:  # per-head files, other inputs' files: plan again
            outputs = dataclasses.replace(outputs, heads=tuple(seg.head_names)
                                          if seg.multi_head else ())
            images, failures = collect_images(args.images, recursive=args.recursive,
                                              suffixes=outputs.suffixes)
            images, matched, unmatched = match_input_files(images, folders)
            failures += unmatched
            outputs.run_files(model=None if url_scheme(args.engine) else args.engine,
                              inputs=args.images, images=images, out_dir=out_dir,
                              recursive=args.recursive,
                              extra_inputs={n: [m[n] for m in matched.values()]
                                            for n in folders}).check()
            missing = len(failures)
        for path, why in failures:
            print(f"error: {path}: {why}", file=sys.stderr)
        latencies: list[float] = []
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
                                     max_pixels=args.max_pixels, **matched.get(path, {}))
                latencies.append(time.perf_counter() - start)
                if seg.multi_head and args.scores:
                    labels = {head: r[0] for head, r in result.items()}
                    scores = {head: r[1] for head, r in result.items()}
                else:
                    labels, scores = result if args.scores else (result, None)
                outputs.write(seg, image, labels, scores, out_dir, stem)
            except (FCNError, MemoryError) as exc:
                why = str(exc) if isinstance(exc, FCNError) else "out of memory for this image"
                failures.append((path, why))
                tqdm.write(f"error: {path}: {why}", file=sys.stderr)

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
