"""Time and memory of ``fcn-import`` on a full-size caffemodel (generated: no download here).

    python -m benchmarks.import_caffemodel                    # FCN-8s VGG16, 540 MB, in /tmp
    python -m benchmarks.import_caffemodel --arch fcn_alexnet --dir /data/tmp

Writes a caffemodel with the published net's layer names and blob shapes (random values, the
layer parameters Caffe stores) one layer at a time, then runs ``fcn-import`` on it in a fresh
process and reports the wall time and that process's peak resident memory, next to the peak of
a process that only imports the same modules (the interpreter and PyTorch). The issue's budget:
well under a minute, peak memory below 3x the file. Files are deleted afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, sys, time
from fcn_deploy.models.importing import import_weights
{body}
# VmHWM, not ru_maxrss: the latter carries over the parent's peak across fork + exec.
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({{"peak_rss_mb": int(hwm.split()[1]) / 1024, "seconds": seconds}}))
"""
_IMPORT = """
t0 = time.perf_counter()
report = import_weights(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - t0
print(report.summary().splitlines()[1], file=sys.stderr)
"""
_BASELINE = "import torch\nseconds = 0.0\n"


def generated_layers(arch: str, *, seed: int = 0):
    """The net's weighted layers with Caffe's types and parameters, random blobs, in net order."""
    import numpy as np
    import torch
    from torch import nn

    from fcn_deploy.models import caffe, create_model
    from fcn_deploy.models.layers import FixedScale

    with torch.device("meta"):
        model = create_model(arch)
    rng = np.random.default_rng(seed)
    for source, module_name in model.source_layer_map().items():
        module = model.get_submodule(module_name)
        if isinstance(module, FixedScale):
            channels = 512 if source.endswith("pool4") else 256
            yield caffe.CaffeLayer(source, "Scale", blobs=[np.full(channels, module.factor,
                                                                   np.float32)],
                                   scale_value=module.factor)
            continue
        deconv = isinstance(module, nn.ConvTranspose2d)
        blobs = [rng.standard_normal(tuple(module.weight.shape), dtype=np.float32) * 0.01]
        if module.bias is not None:
            blobs.append(rng.standard_normal(tuple(module.bias.shape), dtype=np.float32) * 0.01)
        conv = caffe.ConvSpec(num_output=module.out_channels, kernel=module.kernel_size,
                              stride=module.stride, pad=module.padding, group=module.groups,
                              bias_term=module.bias is not None)
        yield caffe.CaffeLayer(source, "Deconvolution" if deconv else "Convolution",
                               blobs=blobs, conv=conv)


def _child(body: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD.format(body=body), *args],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stderr}")
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.import_caffemodel")
    p.add_argument("--arch", default="fcn8s_vgg16")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the files go")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    args = p.parse_args(argv)
    from fcn_deploy.models import caffe

    folder = Path(args.dir)
    model_path = folder / f"bench-{args.arch}.caffemodel"
    out_path = folder / f"bench-{args.arch}.pt"
    t0 = time.perf_counter()
    caffe.write_caffemodel(model_path, generated_layers(args.arch))
    written = time.perf_counter() - t0
    size_mb = model_path.stat().st_size / 2**20
    try:
        base = _child(_BASELINE)
        run = _child(_IMPORT, str(model_path), str(out_path))
    finally:
        if not args.keep:
            for path in (model_path, out_path):
                if path.exists():
                    os.unlink(path)
    result = {"arch": args.arch, "file_mb": round(size_mb, 1), "write_s": round(written, 1),
              "import_s": round(run["seconds"], 1), "peak_rss_mb": round(run["peak_rss_mb"]),
              "baseline_rss_mb": round(base["peak_rss_mb"]),
              "peak_over_file": round(run["peak_rss_mb"] / size_mb, 2),
              "peak_minus_baseline_over_file":
                  round((run["peak_rss_mb"] - base["peak_rss_mb"]) / size_mb, 2)}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
