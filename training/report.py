"""What a training run leaves for people to read: log.jsonl, curves.png, report.json/.md."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fcn_deploy.fileio import atomic_path, atomic_write_text

METRIC_NAMES = ("pixel_accuracy", "mean_accuracy", "mean_iu", "fw_iu")


def write_log(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Rewrite the per-evaluation log (one JSON object per line) from the run's history.

    Rewritten whole from the checkpointed history, so after a resume it never holds entries
    of iterations that the resumed run redoes.
    """
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_curves(path: Path, losses: Sequence[float], records: Sequence[dict[str, Any]]) -> None:
    """Training loss per iteration (raw and smoothed) and validation mean IU / pixel accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_iu = fig.subplots(1, 2)
    y = np.asarray(losses, dtype=np.float64)
    x = np.arange(1, y.size + 1)
    if y.size:
        ax_loss.plot(x, y, lw=0.5, alpha=0.35, color="tab:blue", label="per iteration")
        window = max(1, y.size // 50)
        smooth = _smooth(y, window)
        ax_loss.plot(x[window - 1:], smooth, color="tab:blue", label=f"mean of {window}")
        if np.all(y[np.isfinite(y)] > 0) and np.nanmax(y) / max(np.nanmin(y), 1e-30) > 100:
            ax_loss.set_yscale("log")
    ax_loss.set(xlabel="iteration", ylabel="training loss", title="loss")
    ax_loss.legend(loc="upper right")
    evals = [r for r in records if r.get("mean_iu") is not None]
    if evals:
        it = [r["iteration"] for r in evals]
        ax_iu.plot(it, [100 * r["mean_iu"] for r in evals], "o-", label="mean IU")
        ax_iu.plot(it, [100 * r["pixel_accuracy"] for r in evals], "s--", label="pixel accuracy")
        for key in sorted(k for k in evals[-1] if k.endswith("_pixel_accuracy")
                          and k != "pixel_accuracy"):  # the other heads of a multi-head net
            ax_iu.plot(it, [100 * (r.get(key) or 0.0) for r in evals], "^:",
                       label=f"{key.removesuffix('_pixel_accuracy')} pixel accuracy")
        ax_iu.legend(loc="lower right")
    else:
        ax_iu.text(0.5, 0.5, "no validation set", ha="center", va="center",
                   transform=ax_iu.transAxes)
    ax_iu.set(xlabel="iteration", ylabel="%", title="validation", ylim=(0, 100))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def format_pct(x: float | None) -> str:
    """A metric in [0, 1] as a percentage with one decimal; "-" when missing or NaN."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def write_report(out: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """``report.json`` (everything) and ``report.md`` (the four metrics and per-class IU)."""
    json_path, md_path = out / "report.json", out / "report.md"
    atomic_write_text(json_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    lines = [f"# Training report: {report['arch']}", ""]
    lines.append(f"- dataset: `{report['dataset']}`, validation: `{report['val_dataset']}`")
    recipe = report["recipe"]
    lines.append(f"- recipe: {recipe['name']} (lr {recipe['lr']:g}, momentum {recipe['momentum']:g}, "
                 f"weight decay {recipe['weight_decay']:g}, "
                 f"{'normalized' if recipe['normalize_loss'] else 'summed'} loss, "
                 f"{recipe['batch_size']} x {recipe['accumulate']} images per iteration)")
    lines.append(f"- iterations: {report['iterations']}, training time {report['elapsed_s']:.0f} s "
                 f"on {report['device']}, seed {report['seed']}")
    lines.append(f"- final training loss (mean of the last interval): "
                 f"{report['final_train_loss']:.4g}")
    final, best = report.get("final"), report.get("best")
    if final is None:
        lines += ["", "No validation set: no metrics.", ""]
    else:
        lines += ["", "| | iteration | pixel acc. (%) | mean acc. (%) | mean IU (%) | fw IU (%) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for label, m in (("final", final), ("best", best)):
            if m is not None:
                lines.append(f"| {label} | {m['iteration']} | " +
                             " | ".join(format_pct(m[k]) for k in METRIC_NAMES) + " |")
        lines += ["", "Per-class IU (final model):", "", "| class | IU (%) |", "|---|---:|"]
        for i, (name, iu) in enumerate(zip(report["class_names"], final["per_class_iu"])):
            lines.append(f"| {i} {name} | {format_pct(iu)} |")
        lines.append("")
        for head, metrics in final.get("heads", {}).items():
            lines += [f"## Head {head}", "", "| | pixel acc. (%) | mean acc. (%) | mean IU (%) "
                      "| fw IU (%) |", "|---|---:|---:|---:|---:|",
                      "| final | " + " | ".join(format_pct(metrics[k]) for k in METRIC_NAMES) + " |",
                      "", "| class | IU (%) |", "|---|---:|"]
            names = report.get("head_class_names", {}).get(head) or []
            for i, iu in enumerate(metrics["per_class_iu"]):
                lines.append(f"| {i} {names[i] if i < len(names) else ''} | {format_pct(iu)} |")
            lines.append("")
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    return json_path, md_path
