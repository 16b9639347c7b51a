"""Where ONNX Runtime spends a forward pass: per-operator times from its own profiler.

Used to measure *convolution* throughput (convolution FLOPs over the time spent in convolution
kernels) rather than the whole graph's, and to see what else costs time (layout reorders,
pooling, upsampling). ONNX Runtime fuses Conv+ReLU and, at the "all" optimization level on x86,
rewrites convolutions into its blocked NCHWc layout; those nodes still report ``op_name`` Conv
(or FusedConv), and the ``ReorderInput``/``ReorderOutput`` nodes around them are the layout cost.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.ortsession import session_options

CONV_OPS = ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcConv")


@dataclass
class OpProfile:
    """Mean milliseconds per run by operator type and by node, over ``runs`` profiled runs."""

    runs: int
    by_op_ms: dict[str, float] = field(default_factory=dict)
    by_node_ms: dict[str, float] = field(default_factory=dict)
    node_op: dict[str, str] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return sum(self.by_op_ms.values())

    def op_ms(self, ops: Sequence[str]) -> float:
        return sum(v for k, v in self.by_op_ms.items() if k in ops)

    @property
    def conv_ms(self) -> float:
        return self.op_ms(CONV_OPS)


def parse_ort_profile(events: list[dict[str, Any]], *, runs: int) -> OpProfile:
    """Sum node kernel times of an ONNX Runtime profile (list of Chrome trace events)."""
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    node_op: dict[str, str] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        op = ev.get("args", {}).get("op_name", "?")
        node = ev["name"][: -len("_kernel_time")]
        ms = float(ev.get("dur", 0)) / 1e3
        by_op[op] += ms
        by_node[node] += ms
        node_op[node] = op
    if not by_op:
        raise FCNError("the ONNX Runtime profile has no node timings")
    return OpProfile(runs=runs, by_op_ms={k: v / runs for k, v in by_op.items()},
                     by_node_ms={k: v / runs for k, v in by_node.items()}, node_op=node_op)


def ort_profile(path: str | os.PathLike, shape: Sequence[int], *, threads: int | None = None,
                runs: int = 3, warmup: int = 1, graph_optimization_level: str = "all",
                session_config: dict[str, str] | None = None) -> OpProfile:
    """Profile ``runs`` forward passes of an ONNX graph after ``warmup`` passes.

    The warm-up passes run in the same session (so memory is already allocated); their events
    are dropped, keeping everything from the first timed pass's ``model_run`` event on.
    """
    import onnxruntime as ort

    if runs < 1:
        raise FCNError(f"profile runs must be >= 1, got {runs}")
    options = session_options(intra_op_threads=threads or None,
                              graph_optimization_level=graph_optimization_level,
                              session_config=session_config)
    x = np.random.default_rng(0).standard_normal(tuple(shape), dtype=np.float32) * 50
    with tempfile.TemporaryDirectory(prefix="fcn-profile-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        outputs = [session.get_outputs()[0].name]
        for _ in range(warmup):
            session.run(outputs, {name: x})
        for _ in range(runs):
            session.run(outputs, {name: x})
        trace = session.end_profiling()
        events = json.loads(Path(trace).read_text(encoding="utf-8"))
    # every session.run is one "model_run" event: keep what happened from the first profiled one
    starts = sorted(float(ev["ts"]) for ev in events if ev.get("name") == "model_run")
    if len(starts) != warmup + runs:
        raise FCNError(f"the ONNX Runtime profile has {len(starts)} runs; expected "
                       f"{warmup + runs}")
    cut = starts[warmup]
    events = [ev for ev in events if float(ev.get("ts", 0)) >= cut]
    return parse_ort_profile(events, runs=runs)
