"""The GPU check of the TensorRT path, one command on a machine with an NVIDIA GPU.

    bash scripts/gpu_check.sh [--out DIR] [--extra tensorrt|tensorrt-cu13] [--no-install]
    bash scripts/gpu_check.sh --dry-run        # any CPU: TensorRT steps replaced by ONNX Runtime

Steps: install the GPU extra into the venv; print driver/CUDA/TensorRT versions; export a small
(width 1/16) and a full-width FCN-8s; FP16 and INT8 (Q/DQ) graphs; build FP32/FP16/INT8 plans with
two profiles; parity per precision against ONNX Runtime on the CPU (FP32/FP16 against the FP32
graph, INT8 against the INT8 graph with every graph optimization off, i.e. each Q/DQ computed in
float); layer precisions from the engine inspector (INT8 layers > 0 in the INT8 plan); time each
plan at 1x3x500x500 and 4x3x500x500; build the C++ TensorRT backend against the TensorRT headers
of the installed major version and check its labels equal Python's; run every ``-m tensorrt``
test. Writes ``gpu_check.md`` and ``gpu_check.json`` and ends with one ``PASS|FAIL name value``
line per check; exit status 0 only if every check passed.

``--dry-run`` runs the same script on a CPU: the plans are the ONNX graphs run by ONNX Runtime,
the inspector is replaced by the graph's own precision, only the small model at small shapes; the
report says DRY-RUN on every line. It proves the script runs (the test suite runs it), not
TensorRT.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "fp16", "int8")
#: precision -> (reference graph, ONNX Runtime optimization level of the reference, min label
#: agreement). The same references and thresholds as tests/engine/test_engine_tensorrt.py.
PARITY = {"fp32": ("fp32", "all", 0.995), "fp16": ("fp32", "all", 0.99),
          "int8": ("int8", "disable", 0.98)}


@dataclass
class Check:
    name: str
    ok: bool
    value: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name} {self.value}"


@dataclass
class Report:
    dry_run: bool
    out: Path
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def say(self, text: str) -> None:
        print(f"[gpu_check] {text}", flush=True)

    def check(self, name: str, ok: bool, value: str) -> bool:
        value = f"{value} [DRY-RUN: onnxruntime]" if self.dry_run else value
        self.checks.append(Check(name, bool(ok), value))
        self.say(self.checks[-1].line())
        return bool(ok)

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one step; an exception is a FAIL line naming it, and the next steps go on."""
        self.say(f"-- {name}")
        try:
            return fn()
        except Exception as exc:  # a check script reports every failure and continues
            traceback.print_exc()
            self.check(name, False, f"error: {type(exc).__name__}: {exc}".replace("\n", " ")[:400])
            return None

    def write(self) -> None:
        self.facts["seconds"] = round(time.perf_counter() - self.started, 1)
        title = "# GPU check of the TensorRT path" + (" -- DRY-RUN (no TensorRT: ONNX Runtime "
                                                      "stands in for every TensorRT step)"
                                                      if self.dry_run else "")
        md = [title, "", "Command: `bash scripts/gpu_check.sh" + (" --dry-run`" if self.dry_run
                                                                   else "`"), "",
              "## Machine", "", *[f"- {k}: {v}" for k, v in self.facts.items()], "",
              *self.sections, "", "## Checks", "", "```",
              *[c.line() for c in self.checks], "```", ""]
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.md").write_text("\n".join(md))
        (self.out / "gpu_check.json").write_text(json.dumps(
            {"dry_run": self.dry_run, "facts": self.facts,
             "checks": [asdict(c) for c in self.checks]}, indent=2) + "\n")


# -- steps ---------------------------------------------------------------------------------------
def pick_extra(driver_cuda: str | None) -> str:
    """The GPU extra for the driver's CUDA version ("13.0" -> tensorrt-cu13, else tensorrt)."""
    major = int(driver_cuda.split(".")[0]) if driver_cuda else 12
    return "tensorrt-cu13" if major >= 13 else "tensorrt"


def nvidia_smi() -> dict[str, str]:
    """Driver version, GPU name and the CUDA version the driver supports (nvidia-smi)."""
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
        full = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if q.returncode != 0:
        return {}
    name, driver = [p.strip() for p in q.stdout.splitlines()[0].split(",")[:2]]
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", full.stdout)
    return {"gpu": name, "driver": driver, "driver_cuda": cuda.group(1) if cuda else ""}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def install(report: Report, extra: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "-e", f"{ROOT}[{extra}]"]
    report.say(" ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    report.check("install", proc.returncode == 0,
                 f"pip install -e .[{extra}] rc={proc.returncode} {proc.stderr[-300:].strip()}")


def versions(report: Report, smi: dict[str, str]) -> None:
    import onnxruntime

    report.facts.update({"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                         "cpu": cpu_name(),
                         "cores": os.cpu_count()})
    report.facts.update(smi or {"gpu": "none (nvidia-smi not available)"})
    if report.dry_run:
        report.facts["tensorrt"] = "not used (dry run)"
        return
    from importlib import metadata

    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    from fcn_deploy.engine.cuda import check, gpu_info

    report.facts["tensorrt"] = trt.__version__
    report.facts["cuda-python"] = metadata.version("cuda-python")
    driver = check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
    runtime = check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    report.facts["cuda driver API"] = f"{driver // 1000}.{driver % 1000 // 10}"
    report.facts["cuda runtime (cuda-python)"] = f"{runtime // 1000}.{runtime % 1000 // 10}"
    gpu = gpu_info(0)
    report.facts["gpu (cuda)"] = gpu.describe()
    report.check("versions", True, f"TensorRT {trt.__version__}, driver {smi.get('driver')}, "
                                   f"CUDA {report.facts['cuda driver API']}, {gpu.describe()}")


def make_graphs(report: Report, folder: Path, name: str, width: float, calib_hw: int) -> dict[str, Path]:
    """FP32, FP16 and INT8 ONNX graphs of FCN-8s at ``width`` (random weights, score layers
    given weights so the labels vary)."""
    import numpy as np
    import torch

    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models import create_model
    from fcn_deploy.quantize import QuantizeConfig, quantize_onnx

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create_model("fcn8s_vgg16", num_classes=21, width=width)
    with torch.no_grad():
        for layer in model.score_layers:
            model.get_submodule(layer).weight.normal_(0.0, 0.05 if width >= 1 else 0.5)
    meta = ModelMeta.default("fcn8s_vgg16", 21, arch_kwargs=dict(model.arch_kwargs))
    paths = {p: folder / f"{name}.{p}.onnx" for p in PRECISIONS}
    started = time.perf_counter()
    export_model(model, meta, paths["fp32"], outputs="both", verify=False)
    export_model(model, meta, paths["fp16"], outputs="both", precision="fp16", verify=False)
    rng = np.random.default_rng(1)
    calib = [rng.integers(0, 256, (calib_hw, calib_hw, 3), dtype=np.uint8) for _ in range(4)]
    quantize_onnx(paths["fp32"], paths["int8"], calib, config=QuantizeConfig(progress=False))
    report.say(f"{name}: FP32/FP16/INT8 graphs in {time.perf_counter() - started:.0f} s")
    return paths


def profiles_for(dry_run: bool):
    from fcn_deploy.engine import Profile

    if dry_run:  # tiny shapes: the dry run proves the script, not speed
        return [Profile((1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 96, 96)),
                Profile((1, 3, 32, 32), (2, 3, 64, 64), (2, 3, 64, 64))]
    return [Profile((1, 3, 32, 32), (1, 3, 500, 500), (1, 3, 1024, 1024)),
            Profile((1, 3, 256, 256), (4, 3, 500, 500), (4, 3, 512, 512))]


def build_plans(report: Report, name: str, graphs: dict[str, Path]) -> dict[str, Path]:
    """TensorRT plans (two profiles) or, in the dry run, the ONNX graphs themselves."""
    if report.dry_run:
        for p in PRECISIONS:
            report.check(f"build_{name}_{p}", graphs[p].is_file(), f"{graphs[p].name} (no plan)")
        return dict(graphs)
    from fcn_deploy.engine import BuildOptions, build_engine

    plans = {}
    for p in PRECISIONS:
        plan = graphs[p].with_suffix(".plan")
        started = time.perf_counter()
        info = build_engine(graphs[p], plan, BuildOptions(profiles=profiles_for(False)),
                            progress=False, log=lambda _: None)
        report.check(f"build_{name}_{p}", info.precision == p and plan.stat().st_size > 0,
                     f"{plan.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s, "
                     f"precision {info.precision}")
        plans[p] = plan
    return plans


def layer_precisions(report: Report, name: str, plans: dict[str, Path]) -> None:
    rows = [f"### Layer precisions, {name}", "", "| plan | what ran |", "|---|---|"]
    for p in PRECISIONS:
        if report.dry_run:
            from fcn_deploy.engine.graph import detect_precision

            found = detect_precision(plans[p])
            text = f"graph: {found.describe()}"
            ok = found.precision == p and (p != "int8" or found.qdq_nodes > 0)
        else:
            from fcn_deploy.engine.inspector import inspect_plan

            layers = inspect_plan(plans[p])
            compute = layers.counts(compute_only=True)
            text = layers.describe()
            want = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}[p]
            others = {"fp32": ("fp16", "int8"), "fp16": ("int8",), "int8": ()}[p]
            ok = compute.get(want, 0) > 0 and not any(compute.get(o) for o in others)
        rows.append(f"| {name} {p} | {text} |")
        report.check(f"layers_{name}_{p}", ok, text)
    report.sections += [*rows, ""]


def plan_backend(report: Report, precision: str) -> dict[str, Any]:
    """How a "plan" is opened: TensorRT, or in the dry run ONNX Runtime on the CPU, with exact
    int8 kernels on every x86-64 CPU (``int8_kernels="exact"``, see fcn_deploy.cpu) so the INT8
    numbers do not depend on the CPU's instruction set."""
    if not report.dry_run:
        return {"backend": "tensorrt"}
    options: dict[str, Any] = {"backend": "onnxruntime", "device": "cpu"}
    if precision == "int8":
        options["int8_kernels"] = "exact"
    return options


def _images(hw: tuple[int, int], count: int):
    from fcn_deploy.bench.artifact import random_images

    batch = random_images((count, 3, *hw), seed=7)  # uint8 NHWC BGR images
    return [batch[i] for i in range(count)]


def parity(report: Report, name: str, graphs: dict[str, Path], plans: dict[str, Path],
           hw: tuple[int, int]) -> None:
    import numpy as np

    from fcn_deploy.runtime import Segmenter

    rows = [f"### Parity with ONNX Runtime on the CPU, {name} at {hw[0]}x{hw[1]}", "",
            "| precision | reference | label agreement | threshold | max abs score diff / max abs "
            "score |", "|---|---|---|---|---|"]
    images = _images(hw, 2)
    for p in PRECISIONS:
        ref_graph, level, threshold = PARITY[p]
        with Segmenter.open(graphs[ref_graph], backend="onnxruntime", device="cpu",
                            graph_optimization_level=level) as ref, \
                Segmenter.open(plans[p], **plan_backend(report, p)) as seg:
            agree, rel = [], []
            for image in images:
                ref_labels, ref_scores = ref.predict(image, scores=True)
                labels, scores = seg.predict(image, scores=True)
                agree.append(float((labels == ref_labels).mean()))
                rel.append(float(np.abs(scores - ref_scores).max() / np.abs(ref_scores).max()))
        value = min(agree)
        rows.append(f"| {p} | {ref_graph} graph, ORT optimizations {level} | {value:.4f} | "
                    f">= {threshold} | {max(rel):.2e} |")
        report.check(f"parity_{name}_{p}", value >= threshold,
                     f"agreement {value:.4f} (>= {threshold}), score diff {max(rel):.2e} of max")
    report.sections += [*rows, ""]


def timing(report: Report, name: str, plans: dict[str, Path], shapes: list[tuple[int, ...]]) -> None:
    from fcn_deploy.bench.artifact import time_pipeline
    from fcn_deploy.bench.pipeline import pipeline_for_runner
    from fcn_deploy.runtime import open_runner

    rows = [f"### Latency, {name}", "", "| plan | shape | compute median ms | end to end median "
            "ms | images/s |", "|---|---|---|---|---|"]
    runs, warmup = (3, 1) if report.dry_run else (20, 3)
    for p in PRECISIONS:
        with open_runner(plans[p], **plan_backend(report, p)) as runner:
            for shape in shapes:
                t = time_pipeline(pipeline_for_runner(runner), shape, warmup=warmup, runs=runs)
                text = "x".join(map(str, shape))
                rows.append(f"| {name} {p} | {text} | {t.compute.median:.2f} | {t.e2e.median:.2f} "
                            f"| {t.e2e.throughput:.1f} |")
                report.check(f"time_{name}_{p}_{text}", t.compute.median > 0,
                             f"compute {t.compute.median:.2f} ms, end to end {t.e2e.median:.2f} ms "
                             f"(median of {runs})")
    report.sections += [*rows, ""]


def header_set_for(version: str) -> Path | None:
    """NVIDIA's headers of the installed TensorRT's major.minor, else of its major (newest)."""
    root = Path(os.environ.get("FCN_TENSORRT_HEADERS")
                or ROOT.parent / "shared" / "third_party" / "tensorrt-headers")
    sets = sorted((p for p in root.glob("*/include") if (p / "NvInferRuntime.h").is_file()),
                  key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])
    major_minor = ".".join(version.split(".")[:2])
    exact = [p for p in sets if p.parent.name == major_minor]
    same_major = [p for p in sets if p.parent.name.split(".")[0] == version.split(".")[0]]
    return (exact or same_major or [None])[-1]


def cpp_check(report: Report, graphs: dict[str, Path], plans: dict[str, Path]) -> Path | None:
    """Build the C++ runtime with its TensorRT backend (GPU) and compare labels with Python."""
    from fcn_deploy.imageio import read_label
    from fcn_deploy.runtime import Segmenter

    env = dict(os.environ)
    if report.dry_run:
        build = Path(env.get("FCN_CPP_BUILD_DIR", ROOT / "cpp" / "build"))
        backend, model = "onnxruntime", graphs["fp32"]
        if not (build / "fcn-segment-cpp").is_file():
            report.check("cpp_labels", True, f"not built here ({build}); scripts/test.sh builds it")
            return None
    else:
        import tensorrt as trt

        headers = header_set_for(trt.__version__)
        if headers is None:
            report.check("cpp_build", False, f"no TensorRT {trt.__version__.split('.')[0]}.x "
                         "headers: put NVIDIA/TensorRT's include/ of the matching release tag under "
                         "../shared/third_party/tensorrt-headers/<major.minor>/ or set "
                         "FCN_TENSORRT_HEADERS")
            return None
        build = ROOT / "cpp" / "build-tensorrt"
        env.update(FCN_CPP_BUILD_DIR=str(build), TensorRT_INCLUDE_DIR=str(headers),
                   FCN_WITH_TENSORRT="ON")
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "build_cpp.sh")], env=env,
                              capture_output=True, text=True)
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        if not report.check("cpp_build", proc.returncode == 0,
                            f"headers {headers.parent.name} with TensorRT {trt.__version__} "
                            f"rc={proc.returncode}"):
            return None
        backend, model = "tensorrt", plans["fp32"]
    import cv2

    folder = report.out / "cpp_images"
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(_images((64, 80), 3)):
        paths.append(folder / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    threads = ["--threads", "1"] if backend == "onnxruntime" else []  # same count both sides
    proc = subprocess.run([str(build / "fcn-segment-cpp"), "--model", str(model), "--backend",
                           backend, *threads, *map(str, paths), "-o", str(folder / "masks")],
                          capture_output=True, text=True, timeout=300)
    if not report.check("cpp_run", proc.returncode == 0, f"rc={proc.returncode} {proc.stderr[-300:]}"):
        return build
    differ = 0
    options = {"device": "cpu", "intra_op_threads": 1} if backend == "onnxruntime" else {}
    with Segmenter.open(model, backend=backend, **options) as seg:
        for path in paths:
            differ += int((read_label(folder / "masks" / path.name) != seg.predict(
                cv2.imread(str(path)))).sum())
    report.check("cpp_labels_equal_python", differ == 0,
                 f"{differ} differing pixels over {len(paths)} images ({backend})")
    return build


def tensorrt_tests(report: Report, cpp_build: Path | None) -> None:
    env = dict(os.environ)
    if report.dry_run:  # collection only: the tests must import and select cleanly
        cmd = [sys.executable, "-m", "pytest", "-m", "tensorrt", "--collect-only", "-q",
               "-p", "no:cacheprovider", "tests/engine/test_engine_tensorrt.py",
               "tests/cpp/test_cpp_tensorrt.py"]
    else:
        cmd = [sys.executable, "-m", "pytest", "-m", "tensorrt", "-q", "-p", "no:cacheprovider",
               "tests"]
        env["FCN_REQUIRE_CPP_TENSORRT"] = "1"
        if cpp_build is not None:
            env["FCN_CPP_BUILD_DIR"] = str(cpp_build)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    collected = re.search(r"(\d+) tests? collected", proc.stdout)
    ok = proc.returncode == 0 and ("failed" not in summary and "error" not in summary)
    if report.dry_run:
        ok = ok and collected is not None and int(collected.group(1)) > 0
    elif "skipped" in summary:
        ok = False  # on a GPU machine every tensorrt test must run
    report.check("pytest_tensorrt", ok, summary)


# -- main ----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    report = Report(dry_run=args.dry_run, out=Path(args.out))
    smi = nvidia_smi()
    if not args.dry_run:
        if not smi:
            report.check("gpu", False, "nvidia-smi lists no GPU; use --dry-run on a CPU machine")
            report.write()
            return 1
        if not args.no_install:
            report.step("install", lambda: install(report, args.extra or pick_extra(smi.get("driver_cuda"))))
    report.step("versions", lambda: versions(report, smi))
    work = report.out / "models"
    models = [("small", 1 / 16, 64)] + ([] if args.dry_run else [("full", 1.0, 250)])
    shapes = [(1, 3, 64, 64), (2, 3, 64, 64)] if args.dry_run else [(1, 3, 500, 500), (4, 3, 500, 500)]
    parity_hw = (64, 80) if args.dry_run else (500, 500)
    small = None
    for name, width, calib_hw in models:
        graphs = report.step(f"graphs_{name}", lambda: make_graphs(report, work, name, width, calib_hw))
        if graphs is None:
            continue
        plans = report.step(f"build_{name}", lambda: build_plans(report, name, graphs))
        if plans is None:
            continue
        small = small or (graphs, plans)
        report.step(f"layers_{name}", lambda: layer_precisions(report, name, plans))
        report.step(f"parity_{name}", lambda: parity(report, name, graphs, plans, parity_hw))
        report.step(f"time_{name}", lambda: timing(report, name, plans, shapes))
    cpp_build = report.step("cpp", lambda: cpp_check(report, *small)) if small else None
    report.step("pytest_tensorrt", lambda: tensorrt_tests(report, cpp_build))
    report.write()
    report.say(f"report: {report.out / 'gpu_check.md'} and gpu_check.json "
               f"({report.facts['seconds']} s)")
    print("\n".join(c.line() for c in report.checks))
    return 0 if report.checks and all(c.ok for c in report.checks) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="no GPU: ONNX Runtime stands in for TensorRT, small model, tiny shapes")
    p.add_argument("--out", default=str(ROOT / "runs" / "gpu_check"), help="report folder")
    p.add_argument("--extra", choices=("tensorrt", "tensorrt-cu13"),
                   help="GPU extra to install (default: from the driver's CUDA version)")
    p.add_argument("--no-install", action="store_true", help="use the venv's packages as they are")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
