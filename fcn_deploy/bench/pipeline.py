"""One inference, split into timed stages, for every backend behind the runner contract.

End to end is what an application pays per batch: ``preprocess`` (uint8 BGR images -> float32
NCHW minus mean), ``copy_in`` (host tensor -> the backend's input), ``compute``, ``copy_out``
(backend output -> host numpy) and ``argmax`` (class scores -> label map on the host, zero when
the graph computes the labels itself). "Compute alone" is the ``compute`` stage.

How each backend is split (``compute_mode`` in the report):

- ``onnxruntime``: IOBinding. copy_in wraps the array in an OrtValue on the session's device and
  binds it; compute is ``run_with_iobinding``; copy_out reads the bound outputs to numpy.
- ``torch``: copy_in is ``torch.from_numpy(x).to(device)``; compute is the module's forward
  (with a device sync on CUDA); copy_out is ``.cpu().numpy()``.
- any other runner (TensorRT, ...): the runner's ``infer`` is timed as compute; its copies are
  inside it (``compute_mode`` = "runner.infer (includes copies)").

A multi-input net's pipeline preprocesses and copies every input (``meta.input_specs()``), a
multi-head net's fetches every head's output of the chosen kind and takes the argmax of each; the
label map a run returns is the first head's.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import HeadSpec, InputSpec, ModelMeta
from fcn_deploy.ortsession import session_options
from fcn_deploy.preprocess import preprocess_input
from fcn_deploy.runtime.base import LABELS, SCORES, argmax_labels
from fcn_deploy.runtime.onnxruntime_backend import OnnxRuntimeRunner
from fcn_deploy.runtime.segmenter import input_specs_of
from fcn_deploy.runtime.torch_backend import TorchRunner

STAGES = ("preprocess", "copy_in", "compute", "copy_out", "argmax")


class StagePipeline:
    """Runs one batch and returns ``(labels NxHxW, {stage: seconds})``.

    ``output``: which network output is fetched ("labels": argmax inside the graph; "scores":
    scores out, argmax on the host), for every head. ``inputs`` / ``heads``: the net's
    (``meta.input_specs()`` / ``meta.head_specs()``); None: one ``image`` input with ``mean`` and
    ``channel_order``, one head.
    """

    backend = "?"
    compute_mode = "?"

    def __init__(self, *, mean: Sequence[float], channel_order: str, output: str,
                 inputs: Sequence[InputSpec] | None = None,
                 heads: Sequence[HeadSpec] | None = None) -> None:
        self.mean = [float(m) for m in mean]
        self.channel_order = channel_order
        self.output = output
        self.inputs = list(inputs) if inputs else [
            InputSpec(name="image", channels=3, mean=tuple(self.mean), channel_order=channel_order)]
        self.heads = list(heads) if heads else ModelMeta.default("net", 1).head_specs()
        #: the outputs fetched, one per head
        self.fetch = [h.labels_output if output == LABELS else h.scores_output
                      for h in self.heads]

    def preprocess(self, images: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{input name: float32 NCHW}; ``images`` is the first input's batch (N x H x W x C) or
        {input name: batch} for every input."""
        batches = images if isinstance(images, Mapping) else {self.inputs[0].name: images}
        return {spec.name: np.stack([preprocess_input(spec, item) for item in batches[spec.name]])
                for spec in self.inputs}

    def run(self, images: np.ndarray | Mapping[str, np.ndarray]
            ) -> tuple[np.ndarray, dict[str, float]]:
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        feeds = self.preprocess(images)
        t1 = time.perf_counter()
        times["preprocess"] = t1 - t0
        if len(feeds) == 1 and len(self.fetch) == 1:
            outs = {self.fetch[0]: self.run_tensor(next(iter(feeds.values())), times)}
        else:
            outs = self.run_tensors(feeds, times)
        first = outs[self.fetch[0]]
        if self.output == SCORES:
            t2 = time.perf_counter()
            labels = [argmax_labels(outs[name]) for name in self.fetch][0]
            times["argmax"] = time.perf_counter() - t2
        else:  # the graph did the argmax
            labels = first[:, 0] if first.ndim == 4 else first
            times["argmax"] = 0.0
        return labels, times

    def run_tensor(self, x: np.ndarray, times: dict[str, float]) -> np.ndarray:
        """Run a preprocessed NCHW batch of a single-input, single-head net, filling
        copy_in/compute/copy_out; return the output."""
        return self.run_tensors({self.inputs[0].name: x}, times)[self.fetch[0]]

    def run_tensors(self, feeds: dict[str, np.ndarray],
                    times: dict[str, float]) -> dict[str, np.ndarray]:
        """Run preprocessed NCHW batches of every input, filling copy_in/compute/copy_out;
        return {output name: array} for every fetched output."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def choose_output(names: Sequence[str], wanted: str | None, where: str,
                  heads: Sequence[HeadSpec] | None = None) -> str:
    """"labels" when the graph has them (the deployed path), else "scores"; or as asked. A
    multi-head graph (``heads``) has each kind once per head (``labels_<head>``...)."""
    def present(kind: str) -> bool:
        if not heads:
            return kind in names
        return all((h.labels_output if kind == LABELS else h.scores_output) in names
                   for h in heads)

    if wanted is None:
        return LABELS if present(LABELS) else SCORES
    if wanted not in (LABELS, SCORES):
        raise FCNError(f"output must be 'labels' or 'scores', got {wanted!r}")
    if not present(wanted):
        raise FCNError(f"{where} has no {wanted!r} output (it has {', '.join(names)})")
    return wanted


class OrtPipeline(StagePipeline):
    """ONNX Runtime through IOBinding (see the module docstring)."""

    backend = "onnxruntime"
    compute_mode = "onnxruntime run_with_iobinding"

    def __init__(self, session: Any, *, mean, channel_order: str = "BGR",
                 output: str | None = None, where: str = "graph",
                 inputs: Sequence[InputSpec] | None = None,
                 heads: Sequence[HeadSpec] | None = None) -> None:
        names = [o.name for o in session.get_outputs()]
        heads = heads if heads and len(heads) > 1 else None
        super().__init__(mean=mean, channel_order=channel_order,
                         output=choose_output(names, output, where, heads), inputs=inputs,
                         heads=heads)
        self.session = session
        self.input_name = session.get_inputs()[0].name
        if inputs is None:  # one input, by the graph's name
            self.inputs = [InputSpec(name=self.input_name, channels=3, mean=tuple(self.mean),
                                     channel_order=channel_order)]
        provider = session.get_providers()[0]
        self.device = "cuda" if provider in ("CUDAExecutionProvider",
                                             "TensorrtExecutionProvider") else "cpu"

    def run_tensors(self, feeds: dict[str, np.ndarray],
                    times: dict[str, float]) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        t0 = time.perf_counter()
        binding = self.session.io_binding()
        for name, x in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, self.device, 0))
        for name in self.fetch:
            binding.bind_output(name, self.device)
        t1 = time.perf_counter()
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # ORT's own types: bad shape, failed allocation
            raise FCNError(f"ONNX Runtime failed on input shape "
                           f"{tuple(next(iter(feeds.values())).shape)}: "
                           f"{' '.join(str(exc).split())[:400]}") from None
        t2 = time.perf_counter()
        out = {name: value.numpy() for name, value in zip(self.fetch, binding.get_outputs())}
        t3 = time.perf_counter()
        times.update(copy_in=t1 - t0, compute=t2 - t1, copy_out=t3 - t2)
        return out


class TorchPipeline(StagePipeline):
    """A PyTorch module, eager (see the module docstring)."""

    backend = "torch"
    compute_mode = "torch eager forward"

    def __init__(self, model: Any, *, mean, channel_order: str = "BGR", device: Any = "cpu",
                 output: str | None = None, inputs: Sequence[InputSpec] | None = None,
                 heads: Sequence[HeadSpec] | None = None) -> None:
        import torch

        heads = heads if heads and len(heads) > 1 else None
        names = [h.scores_output for h in heads] if heads else [SCORES]
        super().__init__(mean=mean, channel_order=channel_order,
                         output=choose_output(names, output or SCORES, "a PyTorch model", heads),
                         inputs=inputs, heads=heads)
        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def run_tensors(self, feeds: dict[str, np.ndarray],
                    times: dict[str, float]) -> dict[str, np.ndarray]:
        torch = self.torch
        names = [spec.name for spec in self.inputs]
        with torch.inference_mode():
            t0 = time.perf_counter()
            tensors = [torch.from_numpy(feeds[name]).to(self.device) for name in names]
            self._sync()
            t1 = time.perf_counter()
            try:
                scores = self.model(tensors[0], **dict(zip(names[1:], tensors[1:])))
            except RuntimeError as exc:  # out of memory, or a size the network cannot take
                raise FCNError(f"PyTorch failed on input shape {tuple(tensors[0].shape)}: "
                               f"{str(exc).strip().splitlines()[0][:400]}") from None
            if len(self.heads) > 1:
                per_head = [scores[h.name] for h in self.heads]
            else:
                per_head = [scores["out"] if isinstance(scores, dict) else scores]
            self._sync()
            t2 = time.perf_counter()
            out = {name: s.float().cpu().numpy() for name, s in zip(self.fetch, per_head)}
            t3 = time.perf_counter()
        times.update(copy_in=t1 - t0, compute=t2 - t1, copy_out=t3 - t2)
        return out


class RunnerPipeline(StagePipeline):
    """Any runner through ``infer`` (copies are inside the compute stage)."""

    compute_mode = "runner.infer (includes copies)"

    def __init__(self, runner: Any, *, output: str | None = None) -> None:
        meta = runner.meta
        heads = meta.head_specs() if meta.multi_head else None
        super().__init__(mean=meta.mean, channel_order=meta.channel_order,
                         output=choose_output(runner.output_names, output, str(runner.path),
                                              heads),
                         inputs=input_specs_of(runner), heads=heads)
        self.runner = runner
        self.backend = runner.backend

    def run_tensors(self, feeds: dict[str, np.ndarray],
                    times: dict[str, float]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = self.runner.infer(feeds, outputs=self.fetch)
        times.update(copy_in=0.0, compute=time.perf_counter() - t0, copy_out=0.0)
        return out


def _ort_stages(runner: OnnxRuntimeRunner, meta, output: str | None) -> StagePipeline:
    return OrtPipeline(runner.session, mean=meta.mean, channel_order=meta.channel_order,
                       output=output, where=str(runner.path), inputs=input_specs_of(runner),
                       heads=meta.head_specs())


def _torch_stages(runner: TorchRunner, meta, output: str | None) -> StagePipeline:
    return TorchPipeline(runner.model, mean=meta.mean, channel_order=meta.channel_order,
                         device=runner.device, output=output, inputs=input_specs_of(runner),
                         heads=meta.head_specs())


#: Runner classes whose copies and compute can be timed apart (by their documented ``session`` /
#: ``model``); every other runner, whatever its backend, is timed through ``infer``
#: (:class:`RunnerPipeline`). One entry per class; no backend names compared anywhere.
_STAGE_SPLITS = {OnnxRuntimeRunner: _ort_stages, TorchRunner: _torch_stages}


def pipeline_for_runner(runner: Any, *, output: str | None = None) -> StagePipeline:
    """The most finely split pipeline this runner allows."""
    meta = runner.meta
    if meta is None:
        raise FCNError(f"{runner.path}: no model metadata (mean, channel order); export it with "
                       "fcn-export so it can be benchmarked end to end")
    split = _STAGE_SPLITS.get(type(runner))
    if split is not None:
        return split(runner, meta, output)
    return RunnerPipeline(runner, output=output)


#: Session setting for several sessions in one process: ONNX Runtime's pool threads otherwise
#: keep spinning after a Run returns and take a core from whatever runs next. Measured here
#: (2 cores, 500x500 convolutionalized AlexNet): 74 ms right after another session's Run
#: against 45 ms back to back; with this setting 45 ms both ways. Spinning *during* a Run is
#: unchanged, so a single session loses nothing.
STOP_SPINNING = {"session.force_spinning_stop": "1"}


def make_ort_session(path: Any, *, threads: int | None = None, level: str = "all",
                     session_config: dict[str, str] | None = None,
                     stop_spinning: bool = True):
    """A CPU ONNX Runtime session with the settings every benchmark uses: the ORT runner's own
    (``intra_op_num_threads``, the graph optimization level) plus :data:`STOP_SPINNING` (so
    sessions timed side by side do not slow each other down)."""
    import onnxruntime as ort

    entries = {**(STOP_SPINNING if stop_spinning else {}), **(session_config or {})}
    options = session_options(intra_op_threads=threads or None, graph_optimization_level=level,
                              session_config=entries)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
