"""fcn-segment --ray: the options and the run, kept apart from the local loop in segment.py.

    fcn-segment --engine fcn8s.onnx --ray photos/ -o out/ --actors 4      # RAY_ADDRESS or local
    fcn-segment --engine fcn8s.plan --ray ray://head:10001 'imgs/*.jpg' -o /shared/out
    fcn-segment --engine nyud_fcn16s_color_hha.onnx --ray rgb/ --input hha=hha/ -o out/
    fcn-segment --engine siftflow_fcn16s.onnx --ray photos/ -o out/   # <stem>_sem/_geo.png
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcn_deploy.errors import FCNError
from fcn_deploy.runtime.outputs import SegmentOutputs
from fcn_deploy.serve.ray_segment import RaySegmentOptions, looks_like_ray_address, ray_segment


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray (batch segmentation on a cluster)")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run on Ray: ADDRESS auto, ray://head:10001 or host:port; alone: "
                            "RAY_ADDRESS if set, else a new local Ray")
    group.add_argument("--actors", type=int, default=1,
                       help="Segmenter actors in the pool (default 1)")
    group.add_argument("--cpus-per-actor", type=float, default=1.0,
                       help="CPUs reserved per actor (default 1; also its inference threads)")
    group.add_argument("--gpus-per-actor", type=float, default=None,
                       help="GPUs per actor (default 1 for a .plan, else 0)")
    group.add_argument("--batch-size", type=int, default=4,
                       help="images per actor call (default 4)")
    group.add_argument("--no-resume", action="store_true",
                       help="redo images whose outputs exist (default: skip them)")


def normalize_ray_argv(argv: Sequence[str] | None) -> list[str]:
    """``--ray photos/`` means --ray without an address followed by an input, not address
    'photos/': only a value that looks like an address (auto, ray://..., host:port) is one."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, token in enumerate(args[:-1]):
        if token == "--ray" and not looks_like_ray_address(args[i + 1]):
            args[i] = "--ray="
    return args


_RAY_ONLY = {"actors": 1, "cpus_per_actor": 1.0, "gpus_per_actor": None, "batch_size": 4,
             "no_resume": False}


def maybe_run_ray(args: argparse.Namespace) -> int | None:
    """With --ray: run on Ray and return the exit status; without: None (after checking that no
    Ray-only option was given, since it would be silently ignored)."""
    if args.ray is not None:
        return run_ray(args)
    used = [k for k, default in _RAY_ONLY.items() if getattr(args, k) != default]
    if used:
        raise FCNError(f"--{used[0].replace('_', '-')} applies to --ray only")
    return None


def run_ray(args: argparse.Namespace) -> int:
    """Run fcn-segment's parsed arguments on Ray; exit status as the local run's."""
    outputs = SegmentOutputs(overlay=args.overlay, opacity=args.opacity,
                             legend=not args.no_legend, scores=args.scores)
    options = RaySegmentOptions(
        model=args.engine, outputs=outputs, backend=args.backend, device=args.device,
        actors=args.actors, num_cpus=args.cpus_per_actor, num_gpus=args.gpus_per_actor,
        threads=args.threads, batch_size=args.batch_size, address=args.ray or None,
        recursive=args.recursive, resume=not args.no_resume, tile=args.tile,
        max_pixels=args.max_pixels, input_folders=dict(args.inputs))
    report = ray_segment(args.images, args.output, options)
    for path, why in report.failed:
        print(f"error: {path}: {why}", file=sys.stderr)
    total = len(report.done) + len(report.skipped) + len(report.failed)
    print(f"segmented {len(report.done)} of {total} images on Ray ({report.actors} actors) into "
          f"{args.output}; {len(report.skipped)} already done; "
          f"{report.images_per_s:.2f} images/s")
    if report.failed:
        print(f"{len(report.failed)} failed: " + ", ".join(p for p, _ in report.failed),
              file=sys.stderr)
        return 1
    return 0
