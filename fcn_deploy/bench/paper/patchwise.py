"""Section 3.1: patchwise classification against one convolutionalized pass over the image.

AlexNet (CaffeNet geometry, 227x227 input) classifies the patches of a ``grid x grid`` lattice
with stride 32, batched and one by one; its convolutionalized copy (same weights, fc layers as
convolutions) computes the whole grid in one pass over the image. Then the two dense-output
baselines the paper argues against, extrapolated from a measured sample (and labelled so):
patchwise prediction at every output pixel, and shift-and-stitch with f^2 passes (f = 32).

Everything runs on one backend with inputs already prepared, so these are compute times.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fcn_deploy.bench.flops import torch_macs
from fcn_deploy.bench.paper.artifacts import model_seed
from fcn_deploy.bench.paper.facts import ALEXNET_PATCH, ALEXNET_STRIDE, PAPER_PATCHWISE
from fcn_deploy.bench.pipeline import make_ort_session
from fcn_deploy.constants import VGG_MEAN_BGR
from fcn_deploy.errors import FCNError
from fcn_deploy.preprocess import preprocess
from fcn_deploy.timing import TimingStats, summarize, time_interleaved_calls


def _executor(model: Any, backend: str, *, threads: int, work_dir: Path, name: str,
              sample: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(nchw float32) -> output`` running ``model`` on ``backend``."""
    import torch

    if backend == "torch":
        def run(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()
        return run
    if backend != "onnxruntime":
        raise FCNError(f"section 3.1 runs on torch or onnxruntime, not {backend!r}")
    import warnings

    path = work_dir / f"{name}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(sample),), str(path), dynamo=False,
                          opset_version=18, input_names=["image"], output_names=["scores"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "scores": {0: "batch"}})
    session = make_ort_session(path, threads=threads)
    return lambda x: session.run(None, {"image": x})[0]


def _time_interleaved(cases: dict[str, tuple[Callable[[], object], int]], *, warmup: int,
                      runs: int, bar=None) -> dict[str, tuple[TimingStats, float]]:
    """Time ``{name: (fn, items per call)}`` interleaved; returns {name: (statistics, process CPU
    seconds per wall second during its calls)}."""
    timed = time_interleaved_calls({name: fn for name, (fn, _) in cases.items()}, warmup=warmup,
                                   runs=runs, settle_s=0.02,
                                   on_run=None if bar is None else lambda: bar.update(1))
    return {name: (summarize(timed[name][0], items=items),
                   timed[name][1] / max(sum(timed[name][0]), 1e-9))
            for name, (_, items) in cases.items()}


def extract_patches(x: np.ndarray, grid: int) -> np.ndarray:
    """The ``grid x grid`` 227x227 patches at stride 32 of a 1x3xHxW input (zero-padded at the
    bottom/right where the lattice runs past the image, as the ceil-mode pools do)."""
    need = ALEXNET_PATCH + ALEXNET_STRIDE * (grid - 1)
    _, c, h, w = x.shape
    padded = np.zeros((1, c, max(h, need), max(w, need)), dtype=x.dtype)
    padded[:, :, :h, :w] = x
    return np.ascontiguousarray(np.concatenate([
        padded[:, :, ALEXNET_STRIDE * i:ALEXNET_STRIDE * i + ALEXNET_PATCH,
               ALEXNET_STRIDE * j:ALEXNET_STRIDE * j + ALEXNET_PATCH]
        for i in range(grid) for j in range(grid)]))


def shifted_inputs(x: np.ndarray, count: int, stride: int = ALEXNET_STRIDE) -> list[np.ndarray]:
    """``count`` of the stride^2 shifted copies shift-and-stitch runs (spread over the shifts)."""
    _, c, h, w = x.shape
    padded = np.zeros((1, c, h + stride, w + stride), dtype=x.dtype)
    padded[:, :, :h, :w] = x
    total = stride * stride
    picks = np.linspace(0, total - 1, num=min(count, total)).round().astype(int)
    out = []
    for k in picks:
        dy, dx = divmod(int(k), stride)
        out.append(np.ascontiguousarray(padded[:, :, dy:dy + h, dx:dx + w]))
    return out


def run_patchwise(config: Any, work_dir: Path, *, log: Callable[[str], None]) -> list[dict]:
    """Section 3.1 measurements on ``config.backend``; returns flat records."""
    import torch

    # lazy: fcn_deploy.models imports torch; the harness loads it only to build models
    from fcn_deploy.models.classifiers import AlexNetClassifier, convolutionalize

    backend, grid = config.backend, config.patch_grid
    size = config.patch_image_size
    torch.manual_seed(model_seed("alexnet_classifier", config.seed))
    classifier = AlexNetClassifier(num_classes=1000, width=config.width).eval()
    fully_conv = convolutionalize(classifier).eval()
    image = np.random.default_rng(config.seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    x = preprocess(image, VGG_MEAN_BGR)[None]
    patches = extract_patches(x, grid)
    with tempfile.TemporaryDirectory(prefix="fcn-bench-patch-", dir=work_dir) as tmp:
        tmp = Path(tmp)
        classify = _executor(classifier, backend, threads=config.threads, work_dir=tmp,
                             name="alexnet", sample=patches[:1])
        whole = _executor(fully_conv, backend, threads=config.threads, work_dir=tmp,
                          name="alexnet_fc", sample=x)
        out = whole(x)
        if tuple(out.shape[2:]) != (grid, grid):
            raise FCNError(f"the convolutionalized AlexNet gave a {out.shape[2]}x{out.shape[3]} "
                           f"grid on a {size}x{size} image; expected {grid}x{grid}")
        n = grid * grid
        shifts = shifted_inputs(x, config.shift_samples)
        w, r = config.warmup, config.runs
        bar = None
        if config.progress:
            from tqdm import tqdm

            bar = tqdm(total=5 * r, desc=f"section 3.1 ({backend})", unit="run", leave=False)
        try:
            log(f"section 3.1: AlexNet on {n} 227x227 patches vs one {size}x{size} pass, "
                f"{backend}, interleaved")
            timed = _time_interleaved({
                "single": (lambda: classify(patches[:1]), 1),
                "batched": (lambda: classify(patches), n),
                "one_by_one": (lambda: [classify(patches[i:i + 1]) for i in range(n)], n),
                "full": (lambda: whole(x), 1),
                "shift": (lambda: [whole(s) for s in shifts], len(shifts)),
            }, warmup=w, runs=r, bar=bar)
        finally:
            if bar is not None:
                bar.close()
    single, batched, one_by_one, full, shift = (timed[k][0] for k in (
        "single", "batched", "one_by_one", "full", "shift"))
    base = {"backend": backend, "width": config.width, "image": f"{size}x{size}",
            "grid": f"{grid}x{grid}", "runs": r, "warmup": w}
    records = []
    cases = [
        ("patch_single", "AlexNet, one 227x227 patch", timed["single"], 1, 1,
         PAPER_PATCHWISE["patch_unbatched_ms"]),
        ("patches_batched", f"AlexNet, {n} patches in one batch", timed["batched"], n, 1,
         PAPER_PATCHWISE["patch_batched_ms"] * n),
        ("patches_one_by_one", f"AlexNet, {n} patches one at a time", timed["one_by_one"], n,
         n,
         PAPER_PATCHWISE["patch_unbatched_ms"] * n),
        ("whole_image", f"convolutionalized AlexNet, {size}x{size} image -> {grid}x{grid} grid",
         timed["full"], n, 1, PAPER_PATCHWISE["whole_image_ms"]),
    ]
    patch_macs = torch_macs(classifier, (1, 3, ALEXNET_PATCH, ALEXNET_PATCH)).total
    macs = {"patch_single": patch_macs, "patches_batched": n * patch_macs,
            "patches_one_by_one": n * patch_macs,
            "whole_image": torch_macs(fully_conv, (1, 3, size, size)).total}
    for case, text, (stats, cpu), patches_done, calls, paper_ms in cases:
        rec = {"kind": "patchwise", "case": case, "description": text, **base,
               "patches": patches_done, "calls_per_run": calls, **stats.flat("compute"),
               "per_patch_ms": stats.mean / patches_done, "cpu_per_wall": cpu,
               "gmacs": macs[case] / 1e9,
               "compute_gflops": 2 * macs[case] / (stats.mean * 1e-3) / 1e9}
        rec["paper_ms"] = paper_ms if grid == 10 else None
        records.append(rec)

    def ratio(name, text, num_name, num_ms, den_name, den_ms, paper=None, threshold=None):
        return {"kind": "ratio", "section": "patchwise", "name": name, "description": text,
                "numerator": num_name, "numerator_ms": num_ms, "denominator": den_name,
                "denominator_ms": den_ms, "value": num_ms / den_ms, "paper_value": paper,
                "threshold": threshold, "backend": backend}

    records.append(ratio("whole_vs_batched", f"{n} batched patches / one whole-image pass",
                         "patches_batched", batched.mean, "whole_image", full.mean,
                         PAPER_PATCHWISE["speedup_vs_batched"] if grid == 10 else None))
    records.append(ratio("whole_vs_one_by_one", f"{n} patches one by one / one whole-image pass",
                         "patches_one_by_one", one_by_one.mean, "whole_image", full.mean,
                         PAPER_PATCHWISE["speedup_vs_unbatched"] if grid == 10 else None))
    records.append(ratio("batching_gain", "one patch alone / one patch's share of a batch",
                         "patch_single", single.mean, "patches_batched_per_patch",
                         batched.mean / n,
                         PAPER_PATCHWISE["patch_unbatched_ms"]
                         / PAPER_PATCHWISE["patch_batched_ms"]))
    dense = size * size
    passes = ALEXNET_STRIDE ** 2
    records += [
        {"kind": "extrapolation", "name": "dense_patchwise_batched", **base,
         "description": f"patchwise prediction at every output pixel: {dense} patches, batched",
         "units": dense, "per_unit_ms": batched.mean / n, "total_s": dense * batched.mean / n / 1e3,
         "sample": f"{n} patches in one batch, {r} runs", "extrapolated": True},
        {"kind": "extrapolation", "name": "dense_patchwise_one_by_one", **base,
         "description": f"patchwise prediction at every output pixel: {dense} patches, one by one",
         "units": dense, "per_unit_ms": one_by_one.mean / n,
         "total_s": dense * one_by_one.mean / n / 1e3,
         "sample": f"{n} patches one by one, {r} runs", "extrapolated": True},
        {"kind": "extrapolation", "name": "shift_and_stitch", **base,
         "description": f"shift-and-stitch, output stride f={ALEXNET_STRIDE}: f^2 = {passes} "
                        f"passes over the {size}x{size} image",
         "units": passes, "per_unit_ms": shift.mean / len(shifts),
         "total_s": passes * shift.mean / len(shifts) / 1e3,
         "sample": f"{len(shifts)} distinct shifted passes, {shift.n} runs",
         "extrapolated": True},
    ]
    return records
