"""Batch segmentation on a Ray cluster: Ray Data ``map_batches`` over a pool of Segmenter actors.

    from fcn_deploy.serve.ray_segment import RaySegmentOptions, ray_segment
    report = ray_segment(["photos/", "more/*.jpg", "list.txt"], "out/",
                         RaySegmentOptions(model="fcn8s.onnx", actors=4))

Only file paths travel through Ray (each image's, and for a multi-input net the files of its
other inputs, matched by stem as fcn-segment's ``--input NAME=DIR``); each actor opens the model
once, reads its images, segments them and writes the same files as fcn-segment (one shared
writer, so the results are byte-identical; a multi-head net's ``<stem>_<head>.png`` per head).
The driver learns the net's inputs and heads from the artifact's metadata, without running it. The output folder must therefore be reachable from every node (shared storage
on a multi-node cluster). Images whose outputs all exist are skipped (resumable), bad images are
reported and the rest continue, and the driver shows progress as results come back.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.errors import FCNError
from fcn_deploy.imageio import collect_images, match_input_files, read_image
from fcn_deploy.meta import ModelMeta
from fcn_deploy.runtime.outputs import SegmentOutputs, check_input_folders
from fcn_deploy.runtime.registry import (CHECKPOINT_SUFFIXES, ONNX_SUFFIXES, PLAN_SUFFIXES,
                                         default_backend, open_runner, thread_options,
                                         url_scheme)
from fcn_deploy.runtime.segmenter import Segmenter

_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.-]+:\d+)$")


def looks_like_ray_address(text: str) -> bool:
    """``auto``, ``local``, ``ray://head:10001`` or ``host:port`` (and no such file here)."""
    return bool(_ADDRESS.match(text)) and not Path(text).exists()


@dataclass
class RaySegmentOptions:
    """What to run and how. None means the default.

    ``model``: .onnx, .plan, model.pt or a triton:// URL; ``backend``/``device``: as for the
    Segmenter; ``actors``: actors in the pool (``ActorPoolStrategy(size=actors)``, what
    map_batches' older ``concurrency`` argument set); ``num_cpus`` per
    actor (1) and ``threads`` per actor (default: ``num_cpus``, so actors do not oversubscribe
    the cores); ``num_gpus`` per actor (default 1 for a TensorRT plan, else 0); ``batch_size``:
    image paths per actor call; ``address``: the Ray cluster (None: ``RAY_ADDRESS`` if set, else
    a new local Ray); ``init_options``: extra ``ray.init`` arguments for a local Ray (e.g.
    ``num_cpus``, ``object_store_memory``); ``resume``: skip images whose outputs exist;
    ``tile``/``max_pixels``: tiled inference as ``Segmenter.predict`` takes them;
    ``input_folders``: a multi-input net's other inputs, {input name: folder} (fcn-segment's
    ``--input NAME=DIR``: the file with each image's stem).
    """

    model: str | os.PathLike
    outputs: SegmentOutputs = field(default_factory=SegmentOutputs)
    backend: str | None = None
    device: str | None = None
    actors: int = 1
    num_cpus: float = 1.0
    num_gpus: float | None = None
    threads: int | None = None
    batch_size: int = 4
    address: str | None = None
    init_options: dict[str, Any] = field(default_factory=dict)
    recursive: bool = False
    resume: bool = True
    progress: bool = True
    tile: int | None = None
    max_pixels: int | None = None
    input_folders: dict[str, str | os.PathLike] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise FCNError(f"actors must be >= 1, got {self.actors}")
        if self.batch_size < 1:
            raise FCNError(f"batch size must be >= 1, got {self.batch_size}")
        if self.num_cpus <= 0:
            raise FCNError(f"CPUs per actor must be > 0, got {self.num_cpus}")


@dataclass
class RaySegmentReport:
    done: list[tuple[str, str]]  # (image, stem)
    skipped: list[tuple[str, str]]  # outputs existed (resume)
    failed: list[tuple[str, str]]  # (image, why)
    seconds: float
    actors: int

    @property
    def images_per_s(self) -> float:
        return len(self.done) / self.seconds if self.seconds > 0 else 0.0


#: Ray column of an extra input's file (``input:hha``), apart from the ``path``/``stem`` columns.
_INPUT_COLUMN = "input:{}"


def read_model_meta(model: str) -> ModelMeta:
    """The metadata of ``model`` without running it (no torch for an ONNX or a plan): an ONNX
    file's ``fcn.*`` props, a plan's sidecar, a checkpoint's meta, a served model's config."""
    if url_scheme(model):
        with open_runner(model) as runner:  # reads the served model's config only
            if runner.meta is None:
                raise FCNError(f"{model}: the served model carries no fcn-deploy metadata")
            return runner.meta
    suffix = Path(model).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        from fcn_deploy.onnxgraph import read_meta  # lazy: onnx, only for an ONNX model

        return read_meta(model)
    if suffix in PLAN_SUFFIXES:
        from fcn_deploy.engine.sidecar import read_sidecar  # lazy: engine imports onnx

        return read_sidecar(model).model_meta()
    if suffix in CHECKPOINT_SUFFIXES:
        from fcn_deploy.models.checkpoint import load_checkpoint  # lazy: torch

        return ModelMeta.from_dict(load_checkpoint(model, mmap=True)["meta"])
    raise FCNError(f"{model}: expected an .onnx, a TensorRT plan ({', '.join(PLAN_SUFFIXES)}), "
                   f"a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) or a triton:// URL")


class SegmentActor:
    """One Segmenter per actor; ``__call__`` segments a batch of paths and writes their files.

    ``extra_inputs``: names of a multi-input net's other inputs, whose files come in the batch's
    ``input:<name>`` columns; ``outputs.heads``: the heads the driver planned files for."""

    def __init__(self, *, model: str, backend: str | None, device: str | None,
                 options: dict[str, Any], outputs: SegmentOutputs, out_dir: str,
                 tile: int | None = None, max_pixels: int | None = None,
                 extra_inputs: Sequence[str] = ()) -> None:
        if device is not None:
            options = dict(options, device=device)
        self.seg = Segmenter.open(model, backend=backend, **options)
        heads = tuple(self.seg.head_names) if self.seg.multi_head else ()
        if heads != outputs.heads or list(extra_inputs) != self.seg.input_names[1:]:
            self.seg.close()
            # a model that changed between planning and opening (a served one): refuse rather
            # than write files the driver did not plan (resume would skip or redo wrongly)
            raise FCNError(f"{model} has the heads {', '.join(self.seg.head_names)} and the "
                           f"inputs {', '.join(self.seg.input_names)}; the run was planned for "
                           f"heads {', '.join(outputs.heads) or '(one)'} and inputs "
                           f"{', '.join([self.seg.input_names[0], *extra_inputs])}")
        self.outputs = outputs
        self.extra_inputs = list(extra_inputs)
        self.out_dir = Path(out_dir)
        self.tile, self.max_pixels = tile, max_pixels

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        errors, millis = [], []
        for k, path in enumerate(batch["path"]):
            stem = batch["stem"][k]
            others = {name: Path(str(batch[_INPUT_COLUMN.format(name)][k]))
                      for name in self.extra_inputs}
            start = time.perf_counter()
            try:
                image = read_image(Path(str(path)))
                result = self.seg.predict(image, scores=self.outputs.scores, tile=self.tile,
                                          max_pixels=self.max_pixels, **others)
                if self.seg.multi_head and self.outputs.scores:  # {head: (labels, scores)}
                    labels = {head: r[0] for head, r in result.items()}
                    scores = {head: r[1] for head, r in result.items()}
                else:
                    labels, scores = result if self.outputs.scores else (result, None)
                self.outputs.write(self.seg, image, labels, scores, self.out_dir, str(stem))
                errors.append("")
            except FCNError as exc:
                errors.append(str(exc))
            millis.append((time.perf_counter() - start) * 1000.0)
        return {"path": np.asarray(batch["path"]), "stem": np.asarray(batch["stem"]),
                "error": np.asarray(errors, dtype=object), "ms": np.asarray(millis)}


def _runner_options(model: str | os.PathLike, options: RaySegmentOptions) -> tuple[str, dict]:
    backend = options.backend or default_backend(model)
    threads = options.threads if options.threads is not None else max(1, int(options.num_cpus))
    return backend, thread_options(backend, threads)


def _init_ray(address: str | None, init_options: dict[str, Any]) -> bool:
    """Connect to (or start) Ray; True when this call started it (and must shut it down)."""
    try:
        import ray
    except ImportError as exc:
        raise FCNError(f"--ray needs Ray ({exc}); install it with pip install "
                       "'fcn-deploy[ray]'") from None
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    if address in (None, "", "local") and not (address is None and os.environ.get("RAY_ADDRESS")):
        kwargs.update(init_options)  # only a local Ray takes resource sizes
    try:
        ray.init(address=address or None, **kwargs)
    except Exception as exc:  # ConnectionError and Ray's own types
        raise FCNError(f"cannot reach Ray at {address or os.environ.get('RAY_ADDRESS') or 'a new local instance'}: "
                       f"{exc}") from None
    return True


def ray_segment(inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
                options: RaySegmentOptions) -> RaySegmentReport:
    """Segment every image of ``inputs`` (files, folders, .txt/.lst lists, globs) into ``output``
    with a pool of Ray actors; see the module docstring."""
    model = options.model if url_scheme(options.model) else str(Path(options.model).resolve())
    if not url_scheme(model) and not Path(model).is_file():
        raise FCNError(f"model file {options.model} does not exist")
    folders = {name: Path(folder) for name, folder in options.input_folders.items()}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise FCNError(f"--input {name}: {folder} is not a folder")
    meta = read_model_meta(model)
    check_input_folders(model, meta, folders)
    extra_inputs = meta.input_names[1:]
    # a multi-head net writes every file once per head: planned, resumed and written so
    outputs = dataclasses.replace(options.outputs, heads=tuple(
        h.name for h in meta.head_specs()) if meta.multi_head else ())
    images, failed = collect_images(list(inputs), recursive=options.recursive,
                                    suffixes=outputs.suffixes)
    if not images and not failed:
        raise FCNError(f"no images found in {', '.join(map(str, inputs))}")
    images, matched, unmatched = match_input_files(images, folders)
    failed = [(str(p), why) for p, why in failed + unmatched]
    out_dir = Path(output).resolve()
    # fcn-segment's own plan: no output over an input (symlinks, hard links), under a scanned
    # folder, or over another output; the output folder created and probed.
    outputs.run_files(model=None if url_scheme(model) else model, inputs=inputs,
                      images=images, out_dir=out_dir, recursive=options.recursive,
                      command="fcn-segment --ray",
                      extra_inputs={n: [m[n] for m in matched.values()]
                                    for n in extra_inputs}).check()
    todo, skipped = [], []
    for path, stem in images:
        targets = outputs.paths(out_dir, stem)
        if options.resume and all(t.is_file() for t in targets):
            skipped.append((str(path), stem))
        else:
            todo.append({"path": str(path.resolve()), "stem": stem,
                         **{_INPUT_COLUMN.format(n): str(matched[path][n].resolve())
                            for n in extra_inputs}})
    backend, runner_options = _runner_options(model, options)
    gpus = options.num_gpus
    if gpus is None:
        gpus = 1.0 if Path(str(model)).suffix.lower() in PLAN_SUFFIXES else 0.0
    start = time.perf_counter()
    done: list[tuple[str, str]] = []
    if todo:
        started = _init_ray(options.address, options.init_options)
        try:
            done = _run(todo, failed, model=model, backend=backend,
                        runner_options=runner_options, options=options, gpus=gpus,
                        out_dir=out_dir, outputs=outputs, extra_inputs=extra_inputs)
        finally:
            if started:
                import ray

                ray.shutdown()
    return RaySegmentReport(done=done, skipped=skipped, failed=failed,
                            seconds=time.perf_counter() - start, actors=options.actors)


def _check_resources(resources: dict[str, float], options: RaySegmentOptions,
                     gpus: float) -> None:
    """Refuse a pool the cluster cannot hold: Ray would wait for the resources forever."""
    for name, per_actor in (("CPU", options.num_cpus), ("GPU", gpus)):
        have = float(resources.get(name, 0.0))
        if per_actor > 0 and options.actors * per_actor > have:
            raise FCNError(f"{options.actors} actors x {per_actor:g} {name} need "
                           f"{options.actors * per_actor:g} {name}s; the Ray cluster has {have:g}. "
                           f"Use fewer --actors or a smaller --{name.lower()}s-per-actor"
                           + (" (0 for an .onnx on CPUs; a TensorRT plan needs a GPU)"
                              if name == "GPU" else ""))


def _run(todo, failed, *, model, backend, runner_options, options, gpus, out_dir, outputs,
         extra_inputs):
    import ray
    from tqdm import tqdm

    _check_resources(ray.cluster_resources(), options, gpus)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours below counts images, not blocks
    context.print_on_execution_start = False
    dataset = ray.data.from_items(
        todo,
        override_num_blocks=max(1, min(len(todo), options.actors * 4)))
    results = dataset.map_batches(
        SegmentActor, batch_size=options.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.actors), num_cpus=options.num_cpus,
        num_gpus=gpus,
        fn_constructor_kwargs=dict(model=str(model), backend=backend, device=options.device,
                                   options=runner_options, outputs=outputs,
                                   out_dir=str(out_dir), tile=options.tile,
                                   max_pixels=options.max_pixels,
                                   extra_inputs=list(extra_inputs)))
    done: list[tuple[str, str]] = []
    bar = tqdm(total=len(todo), unit="img", desc=f"segmenting ({options.actors} actors)",
               file=sys.stderr, disable=None if options.progress else True)
    try:
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            for path, stem, error in zip(batch["path"], batch["stem"], batch["error"]):
                if error:
                    failed.append((str(path), str(error)))
                    tqdm.write(f"error: {path}: {error}", file=sys.stderr)
                else:
                    done.append((str(path), str(stem)))
            bar.update(len(batch["path"]))
    except FCNError:
        raise
    except Exception as exc:  # an actor that cannot open the model fails the whole dataset
        text = str(exc)
        cause = re.search(r"FCNError: (.+)", text)
        raise FCNError(f"Ray segmentation failed: {cause.group(1) if cause else text}") from None
    finally:
        bar.close()
    return done
