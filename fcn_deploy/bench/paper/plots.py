"""The reproduction's pictures (matplotlib, Agg backend, written atomically as PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.fileio import atomic_path


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=110)


def _save(plt, fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_scaling(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Compute latency against input pixels per model (a line per model, sizes labelled), with
    a least-squares straight line showing how close cost is to linear in the pixel count."""
    import numpy as np

    plt, fig = _figure(7.5, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    rows = [r for r in records if r.get("kind") == "scaling"]
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = sorted((r["pixels"], r["compute_mean_ms"], r["size"]) for r in rows
                     if r["model"] == model)
        px = np.array([p[0] for p in pts], dtype=float) / 1e6
        ms = np.array([p[1] for p in pts], dtype=float)
        label = next(r.get("display", model) for r in rows if r["model"] == model)
        line, = ax.plot(px, ms, "o-", label=label)
        if len(px) >= 2:  # least-squares line a + b * pixels: the padding-100 border is the a
            b, a = np.polyfit(px, ms, 1)
            ax.plot([0, px.max()], [a, a + b * px.max()], ":", color=line.get_color(), alpha=0.6)
        for x, y, s in zip(px, ms, (p[2] for p in pts)):
            ax.annotate(f"{s}px", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    backend = rows[0]["backend"] if rows else "?"
    ax.set_xlabel("input size (megapixels, square images)")
    ax.set_ylabel("forward time, mean (ms)")
    ax.set_title(f"FCN latency against input size ({backend}, dotted: straight-line fit)")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend()
    return _save(plt, fig, Path(path))


def plot_table1(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Table 1 forward times: measured here next to the paper's K40c, in ms (log scale), and
    relative to FCN-AlexNet (the shape of the table, comparable across machines)."""
    import numpy as np

    plt, fig = _figure(10, 4.2)
    rows = [r for r in records if r.get("kind") == "table1"]
    names = [r.get("display", r["model"]) for r in rows]
    x = np.arange(len(rows))
    ax = fig.add_subplot(1, 2, 1)
    measured = [r["compute_mean_ms"] for r in rows]
    paper = [r.get("paper_forward_ms") or 0 for r in rows]
    ax.bar(x - 0.2, measured, 0.4, label=f"measured ({rows[0]['backend'] if rows else '?'}, CPU)")
    ax.bar(x + 0.2, paper, 0.4, label="paper (Tesla K40c)")
    ax.set_yscale("log")
    ax.set_ylabel("forward time (ms, log scale)")
    ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
    ax.set_title("Table 1 forward time")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    rel = [r.get("relative_to_alexnet") or 0 for r in rows]
    prel = [r.get("paper_relative_to_alexnet") or 0 for r in rows]
    ax2.bar(x - 0.2, rel, 0.4, label="measured")
    ax2.bar(x + 0.2, prel, 0.4, label="paper")
    ax2.set_ylabel("forward time / FCN-AlexNet's")
    ax2.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
    ax2.set_title("relative to FCN-AlexNet")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, Path(path))
