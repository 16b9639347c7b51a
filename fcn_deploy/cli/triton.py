"""fcn-triton: write a Triton Inference Server model repository from an .onnx or a .plan.

    fcn-triton fcn8s.onnx -o models/ --name fcn8s --max-batch-size 8 --preferred-batch 4 8 \\
        --max-queue-delay-us 2000 --instances 2 --ort-tensorrt fp16
    fcn-triton fcn8s.plan -o models/                      # tensorrt_plan, dims from the profiles
    fcn-triton fcn8s.onnx -o models/ --backend python     # ONNX Runtime on the CPU (model.py)

A multi-input net (NYUDv2's image + hha/depth) gets every input in the config, each with its
channels; a multi-head net (SIFT Flow) every head's labels_<head> / scores_<head>.

Writes <output>/<name>/config.pbtxt and <output>/<name>/<version>/model.onnx|model.plan (plus
model.py for --backend python). The config is checked against Triton's model-config schema
before anything is written. Serve it with `tritonserver --model-repository <output>` and use it
with `fcn-segment --engine triton://host:8000/<name>`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fcn_deploy.cli.common import run_main
from fcn_deploy.errors import FCNError
from fcn_deploy.serve.repository import TritonRepoOptions, write_triton_repository


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW (e.g. 1024x1024)") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-triton", allow_abbrev=False,
        description="Write a Triton Inference Server model repository for an FCN .onnx or "
                    "TensorRT .plan (with its .plan.json sidecar).")
    p.add_argument("model", type=Path, help="the .onnx or .plan to serve")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="model repository folder (created; other models in it are kept)")
    p.add_argument("--name", default=None,
                   help="model name: letters, digits, _, - and . (default: the file's stem)")
    p.add_argument("--version", type=int, default=1, help="version folder (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    p.add_argument("--backend", choices=("native", "python"), default="native",
                   help="native: onnxruntime_onnx / tensorrt_plan platform (default); python: a "
                        "model.py running the ONNX with ONNX Runtime on the CPU")
    p.add_argument("--outputs", choices=("labels", "scores", "both"), default=None,
                   help="outputs to serve, every head's of a multi-head net (default: labels "
                        "when the graph has them, else scores)")
    p.add_argument("--max-batch-size", type=int, default=None,
                   help="largest batch (default 8; for a plan, its profiles' max batch)")
    p.add_argument("--no-dynamic-batching", action="store_true",
                   help="no dynamic_batching section (requests run one by one)")
    p.add_argument("--preferred-batch", type=int, nargs="+", default=(),
                   help="preferred batch sizes of the dynamic batcher")
    p.add_argument("--max-queue-delay-us", type=int, default=0,
                   help="how long the batcher may hold a request to fill a batch (default 0)")
    p.add_argument("--instance-kind", choices=("auto", "gpu", "cpu"), default="auto",
                   help="instance group kind (default: gpu for native, cpu for python)")
    p.add_argument("--instances", type=int, default=1, help="instances per device (default 1)")
    p.add_argument("--ort-tensorrt", choices=("fp32", "fp16"), default=None,
                   help="ONNX Runtime's TensorRT execution accelerator at this precision "
                        "(onnxruntime_onnx on GPU instances)")
    p.add_argument("--version-policy", default="latest:1",
                   help="latest:N, all or specific:V1,V2 (default latest:1)")
    p.add_argument("--max-image", type=_size, default=None,
                   help="largest image HxW the server accepts (default: a plan's profiles; "
                        "else any)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime threads per instance (--backend python)")
    p.add_argument("--print", dest="show", action="store_true", help="print the config.pbtxt")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    options = TritonRepoOptions(
        name=args.name, version=args.version, backend=args.backend,
        max_batch_size=args.max_batch_size, outputs=args.outputs,
        dynamic_batching=not args.no_dynamic_batching,
        preferred_batch_sizes=tuple(args.preferred_batch),
        max_queue_delay_us=args.max_queue_delay_us, instance_kind=args.instance_kind,
        instance_count=args.instances, ort_tensorrt=args.ort_tensorrt,
        version_policy=args.version_policy, max_image=args.max_image,
        intra_op_threads=args.threads, overwrite=args.overwrite)
    if args.no_dynamic_batching and (args.preferred_batch or args.max_queue_delay_us):
        raise FCNError("--preferred-batch and --max-queue-delay-us configure dynamic batching; "
                       "drop --no-dynamic-batching")
    result = write_triton_repository(args.model, args.output, options)
    if args.show:
        print(result.config_text)
    for path in result.files:
        print(f"wrote {path}")
    name = result.model_dir.name
    print(f"serve: tritonserver --model-repository {args.output}; use: fcn-segment --engine "
          f"triton://localhost:8000/{name} ...", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
