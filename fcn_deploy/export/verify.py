"""Check an exported graph: the ONNX checker, then ONNX Runtime (CPU) against PyTorch.

For each input shape (the trace size, an odd smaller size with batch 2, an odd larger size by
default) random data goes through both: for every input the graph's metadata lists, a random image
(or, for a ``log_depth`` input, a random depth map) preprocessed as the runtime does it. Each head
is compared on its own (a multi-head net gets one row per size and head); its scores pass when

    max |onnx - torch| <= atol + rtol * max |torch|        (``max_rel`` = max abs diff / max |torch|)

and the label maps (the graph's "labels" output, or the argmax of its scores) must equal
PyTorch's argmax at every pixel whose top two PyTorch scores are further apart than that same
limit; closer pixels are counted as "ambiguous" and may differ. When the graph has both outputs,
its labels must also equal the argmax of its own scores exactly. Before any of this the graph's
inputs and outputs must be exactly the ones its metadata describes (names, order, channels,
dtypes, the shared batch/height/width dims).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fcn_deploy.constants import VGG_MEAN_BGR
from fcn_deploy.errors import FCNError
from fcn_deploy.export.graph import label_source
from fcn_deploy.meta import DEFAULT_INPUT, HeadSpec, InputSpec, ModelMeta
from fcn_deploy.onnxgraph import interface_problems, load_model, meta_props, read_meta_if_any
from fcn_deploy.ortsession import session_options
from fcn_deploy.preprocess import preprocess_input


@dataclass(frozen=True)
class Tolerance:
    """Scores pass when max |diff| <= atol + rtol * max |reference|."""

    atol: float
    rtol: float

    def __post_init__(self) -> None:
        import math

        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise FCNError(f"{name} must be a finite number >= 0, got {value!r}")

    def limit(self, scale: float) -> float:
        return self.atol + self.rtol * scale

    def __str__(self) -> str:
        return f"|diff| <= {self.atol:g} + {self.rtol:g} * max|ref|"


#: FP32: ONNX Runtime and PyTorch sum convolutions in different orders; differences seen on the
#: registry's nets are ~1e-6 of the score range. FP16: 11-bit significands through 16-22 layers;
#: differences seen are ~1e-3 of the score range (full-width FCN-8s: 8e-4).
TOLERANCES = {"fp32": Tolerance(atol=1e-5, rtol=1e-4), "fp16": Tolerance(atol=1e-3, rtol=1e-2)}


@dataclass
class VerifyCase:
    shape: tuple[int, int, int, int]
    max_ref: float = 0.0
    max_abs: float = 0.0
    limit: float = 0.0
    pixels: int = 0
    labels_differ: int = 0      # unambiguous pixels whose label differs from PyTorch's
    ambiguous: int = 0          # pixels whose top-2 PyTorch scores are within the limit
    ambiguous_differ: int = 0
    self_consistent: bool = True
    problems: list[str] = field(default_factory=list)
    head: str | None = None     # the head of a multi-head net (None: the one head)

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.max_ref if self.max_ref > 0 else float(self.max_abs > 0)

    @property
    def passed(self) -> bool:
        return (not self.problems and self.max_abs <= self.limit and self.labels_differ == 0
                and self.self_consistent)


@dataclass
class VerificationReport:
    path: str
    precision: str
    tolerance: Tolerance
    outputs: list[str]
    checker: str = "ok"
    cases: list[VerifyCase] = field(default_factory=list)
    interface: list[str] = field(default_factory=list)  # I/O differing from the metadata

    @property
    def passed(self) -> bool:
        return (self.checker == "ok" and not self.interface and bool(self.cases)
                and all(c.passed for c in self.cases))

    def table(self) -> str:
        lines = [f"verification of {Path(self.path).name} ({self.precision}, outputs "
                 f"{'+'.join(self.outputs)}): onnx.checker full_check {self.checker}; "
                 f"ONNX Runtime CPU vs PyTorch, scores {self.tolerance}",
                 f"{'input':>14} {'max|ref|':>9} {'max abs':>9} {'rel':>9} {'limit':>9} "
                 f"{'labels differ':>13} {'ambiguous':>9}  result"]
        lines += [f"FAIL: {problem}" for problem in self.interface]
        for c in self.cases:
            shape = "x".join(str(d) for d in c.shape) + (f" {c.head}" if c.head else "")
            result = "ok" if c.passed else "FAIL " + "; ".join(c.problems or ["tolerance"])
            lines.append(f"{shape:>14} {c.max_ref:9.3g} {c.max_abs:9.2e} {c.max_rel:9.2e} "
                         f"{c.limit:9.2e} {c.labels_differ:>6}/{c.pixels:<6} "
                         f"{c.ambiguous_differ:>4}/{c.ambiguous:<4}  {result}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checker": self.checker, "precision": self.precision,
                "atol": self.tolerance.atol, "rtol": self.tolerance.rtol,
                "interface": list(self.interface),
                "cases": [{"shape": list(c.shape), "head": c.head, "max_ref": c.max_ref,
                           "max_abs": c.max_abs, "max_rel": c.max_rel, "limit": c.limit, "pixels": c.pixels,
                           "labels_differ": c.labels_differ, "ambiguous": c.ambiguous,
                           "passed": c.passed} for c in self.cases]}


def default_sizes(sample_shape: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """The trace size, an odd smaller size with batch 2, and an odd larger size."""
    _, c, h, w = (int(d) for d in sample_shape)
    smaller = (2, c, max(1, (h * 3) // 4) | 1, max(1, (w * 2) // 3) | 1)
    larger = (1, c, (h * 4) // 3 | 1, (w * 5) // 4 | 1)
    return [(1, c, h, w), smaller, larger]


def check_graph(path) -> str:
    """Run ``onnx.checker`` with ``full_check`` (shape inference too); "ok" or the error text."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # checker raises ValidationError / InferenceError
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
    return "ok"


def _session(path, *, threads: int | None = None, expose: Sequence[str] = ()):
    """An ONNX Runtime CPU session; ``expose`` adds internal tensors as extra outputs."""
    import onnx
    import onnxruntime as ort

    options = session_options(intra_op_threads=threads or None)
    source: Any = str(path)
    if expose:
        model = load_model(path, external_data=True)
        for name in expose:
            model.graph.output.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, None))
        source = model.SerializeToString()
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise FCNError(f"ONNX Runtime cannot load {path}: {exc}") from None


@dataclass
class _GraphInfo:
    outputs: list[str]
    precision: str
    meta: ModelMeta | None
    interface: list[str]          # how the graph's I/O differs from its metadata
    sources: dict[str, str]       # labels output -> the scores tensor its argmax reads


def _graph_info(path) -> _GraphInfo:
    model = load_model(path)
    outputs = [o.name for o in model.graph.output]
    meta = read_meta_if_any(model, path)
    heads = meta.head_specs() if meta is not None else [HeadSpec("score", 0, (), ())]
    sources = {h.labels_output: label_source(model, h.labels_output) for h in heads
               if h.labels_output in outputs}
    interface = interface_problems(model, meta) if meta is not None else []
    return _GraphInfo(outputs=outputs, precision=meta_props(model).get("precision", "fp32"),
                      meta=meta, interface=interface, sources=sources)


def random_inputs(specs: Sequence[InputSpec], shape: Sequence[int],
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random network inputs of ``shape``'s N, H, W, preprocessed as each input's metadata says:
    images of uniform uint8 pixels, depth maps of uniform depths from 0.5 to 10 m (what NYUDv2's
    depth PNGs hold, in millimetres), so a ``log_depth`` input sees log-depth values."""
    n, _, h, w = (int(d) for d in shape)
    feeds = {}
    for spec in specs:
        if spec.encoding == "log_depth":
            raw = [rng.integers(500, 10_001, size=(h, w)).astype(np.uint16) for _ in range(n)]
        else:
            raw = [rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8) for _ in range(n)]
        feeds[spec.name] = np.stack([preprocess_input(spec, r) for r in raw])
    return feeds


def torch_heads(model, feeds: dict[str, np.ndarray], names: Sequence[str],
                heads: Sequence[str], device) -> list[np.ndarray]:
    """Run ``model`` as the exporter traced it (the first input positional, the others by name)
    and return each head's scores (``heads`` order; one array for a single-head model)."""
    import torch

    tensors = [torch.from_numpy(feeds[n]).to(device) for n in names]
    with torch.no_grad():
        out = model(tensors[0], **dict(zip(names[1:], tensors[1:])))
    if isinstance(out, dict):
        missing = [h for h in heads if h not in out]
        if missing:
            raise FCNError(f"the model returns heads {sorted(out)}; the metadata describes "
                           f"{list(heads)}")
        out = [out[h] for h in heads]
    else:
        out = [out]
    return [o.float().cpu().numpy() for o in out]


def verify_onnx(onnx_path, model, *, sizes: Sequence[Sequence[int]] | None = None,
                mean: Sequence[float] | None = None, precision: str | None = None,
                atol: float | None = None, rtol: float | None = None, seed: int = 0,
                threads: int | None = None, progress: bool = False) -> VerificationReport:
    """Compare ``onnx_path`` run by ONNX Runtime (CPU) with ``model`` run by PyTorch.

    Every input the graph's metadata lists gets random data of its own channels (images, or
    depth maps for a ``log_depth`` input) preprocessed by :func:`preprocess_input`; every head is
    compared (one row per size and head), and the graph's inputs and outputs must be exactly
    the metadata's names with the right dims. ``sizes`` are NCHW shapes whose N, H, W every
    input shares (default: 1x3x96x128, 2x3x73x85, 1x3x129x161). ``precision`` (default: the
    graph's metadata) picks the default tolerances in ``TOLERANCES``; ``mean`` replaces the
    ``image`` input's mean (default: the metadata's, else VGG's BGR mean). Returns the report; it
    does not raise on a mismatch (see ``VerificationReport.passed``).
    """
    import torch

    path = Path(onnx_path)
    if not path.is_file():
        raise FCNError(f"ONNX file {path} does not exist")
    info = _graph_info(path)
    precision = precision or info.precision
    base = TOLERANCES.get(precision, TOLERANCES["fp16"])
    tol = Tolerance(atol=base.atol if atol is None else float(atol),
                    rtol=base.rtol if rtol is None else float(rtol))
    report = VerificationReport(path=str(path), precision=precision, tolerance=tol,
                                outputs=info.outputs, checker=check_graph(path),
                                interface=info.interface)
    if report.checker != "ok" or report.interface:
        return report
    meta = info.meta or ModelMeta.default("unknown", 1)
    specs = [replace(s, mean=tuple(float(m) for m in mean))
             if mean is not None and s.name == DEFAULT_INPUT else s for s in meta.input_specs()]
    heads = meta.head_specs()
    if info.meta is None and len(info.outputs) == 1 and info.outputs[0] not in ("scores", "labels"):
        heads = [HeadSpec("score", 0, (), (), scores_output=info.outputs[0])]
    # a labels-only graph still gets its scores checked: expose what each argmax reads
    expose = [src for lab, src in info.sources.items() if src and src not in info.outputs]
    session = _session(path, threads=threads, expose=expose)
    rng = np.random.default_rng(seed)
    sizes = [tuple(int(d) for d in s) for s in (sizes or default_sizes((1, 3, 96, 128)))]
    names = [s.name for s in specs]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        iterator = sizes
        if progress:
            from tqdm import tqdm

            iterator = tqdm(sizes, desc="verify", unit="size", leave=False)
        for shape in iterator:
            feeds = random_inputs(specs, shape, rng)
            refs = torch_heads(model, feeds, names, [h.name for h in heads], device)
            result = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
            for head, ref in zip(heads, refs):
                scores = result.get(head.scores_output,
                                    result.get(info.sources.get(head.labels_output) or ""))
                report.cases.append(_compare(shape, ref, scores, result.get(head.labels_output),
                                             tol, head=head.name if len(heads) > 1 else None))
    finally:
        model.train(was_training)
    return report


def _compare(shape, ref: np.ndarray, scores: np.ndarray | None, labels: np.ndarray | None,
             tol: Tolerance, *, head: str | None = None) -> VerifyCase:
    n, _, h, w = shape
    case = VerifyCase(shape=tuple(shape), pixels=n * h * w, head=head)
    case.max_ref = float(np.abs(ref).max()) if ref.size else 0.0
    case.limit = tol.limit(case.max_ref)
    if ref.shape[0] != n or ref.shape[2:] != (h, w):
        case.problems.append(f"PyTorch output {tuple(ref.shape)} is not N x C x {h} x {w}")
        return case
    if scores is None and labels is None:
        case.problems.append("the graph has no output for this head")
        return case
    if scores is not None:
        if scores.dtype != np.float32 or scores.shape != ref.shape:
            case.problems.append(f"scores {scores.dtype}{list(scores.shape)}, expected "
                                 f"float32{list(ref.shape)}")
            return case
        case.max_abs = float(np.abs(scores.astype(np.float64) - ref).max())
    if labels is not None:
        if labels.dtype != np.uint8 or labels.shape != (n, h, w):
            case.problems.append(f"labels {labels.dtype}{list(labels.shape)}, expected "
                                 f"uint8[{n}, {h}, {w}]")
            return case
        if scores is not None:
            case.self_consistent = bool(np.array_equal(labels, scores.argmax(axis=1)))
            if not case.self_consistent:
                case.problems.append("labels != argmax(scores) of the same graph")
    else:
        labels = scores.argmax(axis=1)
    ref_labels = ref.argmax(axis=1)
    if ref.shape[1] > 1:
        top2 = -np.partition(-ref, 1, axis=1)[:, :2]
        ambiguous = (top2[:, 0] - top2[:, 1]) <= case.limit
    else:
        ambiguous = np.zeros(ref_labels.shape, bool)
    differ = labels.astype(np.int64) != ref_labels
    case.labels_differ = int(np.count_nonzero(differ & ~ambiguous))
    case.ambiguous = int(np.count_nonzero(ambiguous))
    case.ambiguous_differ = int(np.count_nonzero(differ & ambiguous))
    return case
