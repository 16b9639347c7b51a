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
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.ortsession import session_options
from fcn_deploy.preprocess import preprocess_batch
from fcn_deploy.runtime.base import LABELS, SCORES, argmax_labels
from fcn_deploy.runtime.onnxruntime_backend import OnnxRuntimeRunner
from fcn_deploy.runtime.torch_backend import TorchRunner

STAGES = ("preprocess", "copy_in", "compute", "copy_out", "argmax")


class StagePipeline:
    """Runs one batch and returns ``(labels NxHxW, {stage: seconds})``.

    ``output``: which network output is fetched ("labels": argmax inside the graph; "scores":
    scores out, argmax on the host).
    """

    backend = "?"
    compute_mode = "?"

    def __init__(self, *, mean: Sequence[float], channel_order: str, output: str) -> None:
        self.mean = [float(m) for m in mean]
        self.channel_order = channel_order
        self.output = output

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        return preprocess_batch(list(images), self.mean, channel_order=self.channel_order)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        x = self.preprocess(images)
        t1 = time.perf_counter()
        times["preprocess"] = t1 - t0
        out = self.run_tensor(x, times)
        if self.output == SCORES:
            t2 = time.perf_counter()
            labels = argmax_labels(out)
            times["argmax"] = time.perf_counter() - t2
        else:  # the graph did the argmax
            labels = out[:, 0] if out.ndim == 4 else out
            times["argmax"] = 0.0
        return labels, times

    def run_tensor(self, x: np.ndarray, times: dict[str, float]) -> np.ndarray:
        """Run a preprocessed NCHW batch, filling copy_in/compute/copy_out; return the output."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def choose_output(names: Sequence[str], wanted: str | None, where: str) -> str:
    """"labels" when the graph has them (the deployed path), else "scores"; or as asked."""
    if wanted is None:
        return LABELS if LABELS in names else SCORES
    if wanted not in (LABELS, SCORES):
        raise FCNError(f"output must be 'labels' or 'scores', got {wanted!r}")
    if wanted not in names:
        raise FCNError(f"{where} has no {wanted!r} output (it has {', '.join(names)})")
    return wanted


class OrtPipeline(StagePipeline):
    """ONNX Runtime through IOBinding (see the module docstring)."""

    backend = "onnxruntime"
    compute_mode = "onnxruntime run_with_iobinding"

    def __init__(self, session: Any, *, mean, channel_order: str = "BGR",
                 output: str | None = None, where: str = "graph") -> None:
        names = [o.name for o in session.get_outputs()]
        super().__init__(mean=mean, channel_order=channel_order,
                         output=choose_output(names, output, where))
        self.session = session
        self.input_name = session.get_inputs()[0].name
        provider = session.get_providers()[0]
        self.device = "cuda" if provider in ("CUDAExecutionProvider",
                                             "TensorrtExecutionProvider") else "cpu"

    def run_tensor(self, x: np.ndarray, times: dict[str, float]) -> np.ndarray:
        import onnxruntime as ort

        t0 = time.perf_counter()
        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(x, self.device, 0)
        binding.bind_ortvalue_input(self.input_name, value)
        binding.bind_output(self.output, self.device)
        t1 = time.perf_counter()
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # ORT's own types: bad shape, failed allocation
            raise FCNError(f"ONNX Runtime failed on input shape {tuple(x.shape)}: "
                           f"{' '.join(str(exc).split())[:400]}") from None
        t2 = time.perf_counter()
        out = binding.get_outputs()[0].numpy()
        t3 = time.perf_counter()
        times.update(copy_in=t1 - t0, compute=t2 - t1, copy_out=t3 - t2)
        return out


class TorchPipeline(StagePipeline):
    """A PyTorch module, eager (see the module docstring)."""

    backend = "torch"
    compute_mode = "torch eager forward"

    def __init__(self, model: Any, *, mean, channel_order: str = "BGR", device: Any = "cpu",
                 output: str | None = None) -> None:
        import torch

        super().__init__(mean=mean, channel_order=channel_order,
                         output=choose_output([SCORES], output or SCORES, "a PyTorch model"))
        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def run_tensor(self, x: np.ndarray, times: dict[str, float]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            t0 = time.perf_counter()
            xt = torch.from_numpy(x).to(self.device)
            self._sync()
            t1 = time.perf_counter()
            try:
                scores = self.model(xt)
            except RuntimeError as exc:  # out of memory, or a size the network cannot take
                raise FCNError(f"PyTorch failed on input shape {tuple(x.shape)}: "
                               f"{str(exc).strip().splitlines()[0][:400]}") from None
            if isinstance(scores, dict):
                scores = scores["out"]
            self._sync()
            t2 = time.perf_counter()
            out = scores.float().cpu().numpy()
            t3 = time.perf_counter()
        times.update(copy_in=t1 - t0, compute=t2 - t1, copy_out=t3 - t2)
        return out


class RunnerPipeline(StagePipeline):
    """Any runner through ``infer`` (copies are inside the compute stage)."""

    compute_mode = "runner.infer (includes copies)"

    def __init__(self, runner: Any, *, output: str | None = None) -> None:
        meta = runner.meta
        super().__init__(mean=meta.mean, channel_order=meta.channel_order,
                         output=choose_output(runner.output_names, output, str(runner.path)))
        self.runner = runner
        self.backend = runner.backend

    def run_tensor(self, x: np.ndarray, times: dict[str, float]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.runner.infer({"image": x}, outputs=[self.output])[self.output]
        times.update(copy_in=0.0, compute=time.perf_counter() - t0, copy_out=0.0)
        return out


def _ort_stages(runner: OnnxRuntimeRunner, meta, output: str | None) -> StagePipeline:
    return OrtPipeline(runner.session, mean=meta.mean, channel_order=meta.channel_order,
                       output=output, where=str(runner.path))


def _torch_stages(runner: TorchRunner, meta, output: str | None) -> StagePipeline:
    return TorchPipeline(runner.model, mean=meta.mean, channel_order=meta.channel_order,
                         device=runner.device, output=output)


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
