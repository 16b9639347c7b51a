"""fcn-build: compile an FCN ONNX graph into a TensorRT plan (+ JSON sidecar).

    fcn-build fcn8s.onnx -o fcn8s.plan --min 1x3x128x128 --opt 1x3x500x500 --max 4x3x1024x1024

Repeat --min/--opt/--max for several profiles. Precision comes from the graph (FP32, FP16 or Q/DQ
INT8). An up-to-date plan (same ONNX, TensorRT, GPU, profiles and options) is not rebuilt unless
--force is given; --cache-dir builds into (or reuses) a shared engine cache and copies to -o.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Sequence

from fcn_deploy.cli.common import run_main
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import atomic_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-build", allow_abbrev=False,
        description="Build a TensorRT engine (.plan + .plan.json sidecar) from an FCN ONNX file. "
                    "Precision is taken from the graph (FP32, FP16, or INT8 Q/DQ).")
    p.add_argument("onnx", type=Path, help="the ONNX file (from fcn-export / fcn-quantize)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="plan to write (default: the ONNX path with .plan)")
    p.add_argument("--min", action="append", metavar="NxCxHxW",
                   help="smallest input shape of a profile (repeat with --opt/--max per profile)")
    p.add_argument("--opt", action="append", metavar="NxCxHxW",
                   help="shape the profile's kernels are tuned for")
    p.add_argument("--max", action="append", metavar="NxCxHxW", help="largest input shape of a profile")
    p.add_argument("--workspace", default=None, metavar="SIZE",
                   help="builder workspace limit, e.g. 4GiB or 512MiB (default: TensorRT's)")
    p.add_argument("--opt-level", type=int, default=None, metavar="0-5",
                   help="builder optimization level (default: TensorRT's, 3)")
    p.add_argument("--timing-cache", type=Path, default=None, metavar="FILE",
                   help="timing cache file, read if present and updated after the build")
    p.add_argument("--version-compatible", action="store_true",
                   help="plan also loads on later TensorRT versions of the same major")
    p.add_argument("--exclude-lean-runtime", action="store_true",
                   help="with --version-compatible: leave the lean runtime out of the plan")
    p.add_argument("--hardware-compat", default="none",
                   choices=("none", "ampere_plus", "same_compute_capability"),
                   help="GPUs the plan may run on besides this one (default: none)")
    p.add_argument("--device", type=int, default=0, help="GPU index to build on (default 0)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="engine cache folder: reuse a plan built for the same key, else build there")
    p.add_argument("--force", action="store_true", help="rebuild even if the plan is up to date")
    p.add_argument("--check", action="store_true",
                   help="only check the ONNX file and profiles and print the precision (no GPU)")
    return p


def _main(argv: Sequence[str] | None) -> int:
    # lazy: fcn_deploy.engine imports onnx; fcn-build --help does not need it
    from fcn_deploy.engine.build import (BuildOptions, build_engine, build_run_files, parse_size,
                                         prepare_build)
    from fcn_deploy.engine.cache import EngineCache, plan_is_current
    from fcn_deploy.engine.profiles import describe_profiles, input_profiles, parse_profiles
    from fcn_deploy.engine.sidecar import sidecar_path

    args = build_parser().parse_args(argv)
    output = args.output or args.onnx.with_suffix(".plan")
    build_run_files("fcn-build", args.onnx, output, timing_cache=args.timing_cache).check()
    if args.cache_dir is not None and args.cache_dir.exists() and not args.cache_dir.is_dir():
        raise FCNError(f"--cache-dir {args.cache_dir} is a file; expected a folder")
    options = BuildOptions(
        profiles=parse_profiles(args.min, args.opt, args.max),
        workspace_bytes=parse_size(args.workspace) if args.workspace else None,
        optimization_level=args.opt_level, timing_cache=args.timing_cache,
        version_compatible=args.version_compatible,
        exclude_lean_runtime=args.exclude_lean_runtime,
        hardware_compatibility=args.hardware_compat, device=args.device)
    prep = prepare_build(args.onnx, options)  # everything checkable without TensorRT
    print(f"precision: {prep.graph.precision.describe()}")
    print(f"profiles: {describe_profiles(prep.profiles)}")
    if len(prep.graph.inputs) > 1:  # each input: the profile's N, H, W with its own channels
        for i, profile in enumerate(prep.profiles):
            for name, own in input_profiles(profile, prep.graph.inputs, index=i).items():
                print(f"  #{i} input {name}: {own.describe()}")
    if args.check:
        print(f"{args.onnx}: OK for fcn-build (outputs {', '.join(prep.graph.output_names)})")
        return 0

    cache = EngineCache(args.cache_dir) if args.cache_dir else None
    key = (cache or EngineCache()).key_for(args.onnx, prepared=prep)  # needs TensorRT, GPU
    if not args.force and plan_is_current(output, key):
        print(f"{output} is up to date (same ONNX, TensorRT, GPU, profiles and options); "
              "use --force to rebuild")
        return 0
    if cache is not None:
        result = cache.get_or_build(args.onnx, options, rebuild=args.force, log=print)
        if result.plan_path.resolve() != output.resolve():
            with atomic_path(output) as tmp:
                shutil.copyfile(result.plan_path, tmp)
            with atomic_path(sidecar_path(output)) as tmp:
                shutil.copyfile(sidecar_path(result.plan_path), tmp)
            print(f"copied {result.plan_path} to {output}")
        return 0
    build_engine(args.onnx, output, options, cache_key=key, log=print, prepared=prep)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
