"""The iteration-based training loop: accumulation, evaluation, atomic checkpoints, exact resume.

One iteration = one optimizer step over ``recipe.accumulate`` batches. Every ``eval_every``
iterations (and at the end) the model is scored on the validation set with the four FCN metrics,
``last.pt`` is written (weights, metadata and the whole training state), ``best.pt`` when the mean
IU improves, and ``log.jsonl`` / ``curves.png`` are refreshed. Everything is written atomically.

Resuming restores the weights, the optimizer (momentum buffers), the iteration, the position in
the epoch's image order and the torch/numpy/python random states, so on a CPU a run stopped and
resumed ends with weights bit-identical to an uninterrupted one. The first Ctrl-C (or SIGTERM)
finishes the current iteration, saves ``last.pt`` and stops; a second one stops at once. Any
other error stops without writing, so the last good checkpoint is kept.

Under torchrun (``config.world``) every process runs this loop on its share of the batches with
DistributedDataParallel; see :mod:`training.distributed` for what a step then is.
"""
from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from fcn_deploy.datasets import create_dataset
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import RunFiles
from fcn_deploy.meta import ModelMeta
from fcn_deploy.metrics import ConfusionMatrix
from fcn_deploy.models import (capture_rng_state, create_model, load_checkpoint, restore_rng_state,
                               save_checkpoint)
from fcn_deploy.models.layers import SINGLE_HEAD, head_scores
from fcn_deploy.models.surgery import init_from_coarser, load_imagenet_weights, transplant_streams
from fcn_deploy.ortsession import cap_threads
from .data import LoadError, ResumableBatchSampler, TorchSegmentation, make_loader
from .distributed import Collectives, World, rank_seed
from .losses import segmentation_loss
from .optim import create_optimizer
from .recipes import Recipe
from .report import METRIC_NAMES, format_pct, plot_curves, write_log, write_report

STATE_FORMAT = 1
#: The default validation set of a synthetic run: this many images, seed offset by this much.
SYNTHETIC_VAL_IMAGES = 50
SYNTHETIC_VAL_SEED = 1000


@dataclass
class TrainConfig:
    """A training run: what to train, on which data, with which recipe, where to write.

    ``dataset``/``val_dataset`` are :func:`fcn_deploy.datasets.create_dataset` specs and
    ``dataset_options`` keyword options for both (e.g. ``year``, ``min_size``). With no
    ``val_dataset`` a synthetic training set is validated on 50 synthetic images of another seed;
    other sets are then trained without evaluation (no ``best.pt``). ``init_from`` starts from a
    coarser trained net (FCN-32s -> 16s -> 8s), ``imagenet`` from an ImageNet classifier,
    ``init_streams`` ({stream: checkpoint}) a late-fusion net's streams from trained
    single-stream nets (the reference's RGB-HHA recipe); ``resume`` continues a run from its ``last.pt``. ``on_iteration(iteration, loss)`` is called
    after every step (for embedding and tests).
    """

    arch: str
    dataset: str
    out: Path
    recipe: Recipe
    val_dataset: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    width: float = 1.0
    learn_upsampling: bool = False
    num_classes: int | None = None
    init_from: Path | None = None
    imagenet: Path | None = None
    init_streams: dict[str, Path] = field(default_factory=dict)
    resume: Path | None = None
    overwrite: bool = False
    seed: int = 0
    workers: int = 0
    device: str | None = None
    amp: bool = False
    threads: int | None = None
    val_limit: int | None = None  # None or 0: every validation image
    progress: bool = True
    world: World = field(default_factory=World)  # this process's rank among several (torchrun)
    on_iteration: Callable[[int, float], None] | None = field(default=None, repr=False)


@dataclass
class TrainResult:
    """What a finished run produced (metrics are :meth:`SegMetrics.as_dict` plus ``iteration``)."""

    iterations: int
    losses: list[float]
    final: dict[str, Any] | None
    best: dict[str, Any] | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    report_json: Path
    report_md: Path
    elapsed_s: float


@dataclass
class _Progress:
    """The training state that is not in the model or the optimizer (checkpointed)."""

    iteration: int = 0
    epoch: int = 0
    position: int = 0  # images of this epoch's order already consumed
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # metrics of the best evaluation (by mean IU)
    latest: dict[str, Any] | None = None  # metrics of the latest evaluation
    elapsed_s: float = 0.0
    resumes: list[dict[str, Any]] = field(default_factory=list)  # resumes with changed settings


# --- setup ----------------------------------------------------------------------------------

def resolve_device(name: str | None, *, amp: bool = False,
                   world: World | None = None) -> torch.device:
    """``cpu``/``cuda[:N]``/None (cuda when available); cuda without CUDA is a user error.

    With several processes each one takes the GPU of its local rank (``cuda`` without a number).
    """
    world = world or World()
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FCNError(f"--device {name!r} is not a device; expected cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FCNError(f"--device {name} asked for CUDA, but this PyTorch ({torch.__version__}) "
                       "sees no CUDA GPU; use --device cpu")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise FCNError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA "
                       f"device(s), numbered from 0")
    if device.type not in ("cpu", "cuda"):
        raise FCNError(f"--device {name}: only cpu and cuda are supported")
    if amp and device.type != "cuda":
        raise FCNError("--amp (mixed precision) needs --device cuda")
    if world.distributed and device.type == "cuda":
        if device.index is not None:
            raise FCNError(f"--device {name} with {world.world_size} processes: each process "
                           "uses the GPU of its local rank; pass --device cuda")
        if world.local_rank >= torch.cuda.device_count():
            raise FCNError(f"local rank {world.local_rank} needs GPU {world.local_rank}, but "
                           f"this machine has {torch.cuda.device_count()}; start at most that "
                           "many processes per machine")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


#: Every file a run writes into its --out folder.
RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "curves.png", "report.json", "report.md")


def prepare_output(out: Path, *, resume: bool, overwrite: bool,
                   inputs: Sequence[tuple[str, Path | None]] = (),
                   folders: Sequence[tuple[str, Path | None]] = ()) -> Path:
    """Create (and probe) the output folder; refuse to clobber another run's checkpoints unless
    asked, and always refuse when a run file would overwrite one of ``inputs`` (--init-from...)
    or land in one of the data ``folders`` (curves.png would become a training image)."""
    out = Path(out)
    plan = RunFiles("fcn-train")
    for what, path in inputs:
        plan.read(what, path)
    for what, path in folders:
        if path is not None:
            plan.read_folder(what, path)
    plan.write_folder("output folder", out)
    for name in RUN_FILES:
        plan.write(f"--out file {name}", out / name)
    plan.check()
    last = out / "last.pt"
    if last.exists() and not resume and not overwrite:
        raise FCNError(f"{last} already exists (a previous run); pass --resume {last} to continue "
                       "it, --overwrite to start over, or choose another --out")
    return out


def _open_datasets(config: TrainConfig):
    options = dict(config.dataset_options)
    train_set = create_dataset(config.dataset, **options)
    val_spec, val_options = config.val_dataset, options
    scheme = config.dataset.partition(":")[0].strip().lower()
    if val_spec is None and scheme.startswith("synthetic"):
        val_spec = f"{scheme}:{SYNTHETIC_VAL_IMAGES}"
        val_options = {**options, "seed": int(options.get("seed") or 0) + SYNTHETIC_VAL_SEED}
    val_set = create_dataset(val_spec, **val_options) if val_spec else None
    if val_set is not None and val_set.num_classes != train_set.num_classes:
        raise FCNError(f"validation set {val_spec} has {val_set.num_classes} classes but the "
                       f"training set {config.dataset} has {train_set.num_classes}")
    if val_set is not None and val_set.heads != train_set.heads:
        raise FCNError(f"validation set {val_spec} has the heads {val_set.heads} but the "
                       f"training set {config.dataset} has {train_set.heads}")
    if len(train_set) == 0:
        raise FCNError(f"training set {config.dataset} is empty")
    if val_set is not None and len(val_set) == 0:
        raise FCNError(f"validation set {val_spec} is empty")
    return train_set, val_set, val_spec


def _data_folders(*datasets) -> list[tuple[str, Path | None]]:
    """The image and mask folders plain-folder datasets scan (VOC/SBD read listed files only)."""
    return [(f"dataset {kind} folder", getattr(ds, attr, None))
            for ds in datasets if ds is not None
            for kind, attr in (("image", "images_dir"), ("mask", "masks_dir"))]


def _check_checkpoint_compatible(path: Path, ckpt: dict[str, Any], model) -> None:
    arch, kwargs = ckpt["arch"], dict(ckpt["arch_kwargs"])
    if arch != model.arch:
        raise FCNError(f"--resume checkpoint {path} holds a {arch} model; this run trains "
                       f"{model.arch} (pass the same --arch, or start a new run)")
    if kwargs.get("num_classes") != model.num_classes:
        raise FCNError(f"--resume checkpoint {path} has {kwargs.get('num_classes')} classes; "
                       f"this run's data has {model.num_classes}")
    if kwargs != dict(model.arch_kwargs):
        raise FCNError(f"--resume checkpoint {path} was built with {kwargs}; this run builds "
                       f"{model.arch_kwargs} (check --width / --learn-upsampling)")


def _load_resume_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    ckpt = load_checkpoint(path, mmap=mmap)
    state = ckpt.get("training_state")
    if not state:
        raise FCNError(f"checkpoint {path} holds no training state (only last.pt does); "
                       "use --init-from to start a new run from its weights")
    if state.get("format") != STATE_FORMAT:
        raise FCNError(f"checkpoint {path} has training state format {state.get('format')}; "
                       f"this version resumes format {STATE_FORMAT}")
    return ckpt


def resume_settings(path: Path) -> dict[str, Any]:
    """What a run stored about itself in ``path`` (arch, dataset specs, recipe, seed, width...),
    so that ``fcn-train --resume last.pt`` needs no other option. The tensors are only mapped,
    not read: train() loads the checkpoint for real when it resumes."""
    ckpt = _load_resume_checkpoint(Path(path), mmap=True)
    return {**ckpt["training_state"].get("config", {}), "arch": ckpt["arch"]}


#: The TrainConfig fields that change a run's result, with the fcn-train option that sets each.
#: They are stored in last.pt; ``fcn-train --resume`` restores those not given again, and a run
#: resumed with a different value says so (stderr note, ``resumes`` in report.json). The recipe's
#: fields are compared one by one (``--lr``...). Not stored: ``workers`` (the image order does not
#: depend on it), ``progress``, ``out``, ``overwrite``, and the starting point (``init_from``,
#: ``imagenet``: a resumed run starts from the checkpoint's weights).
RESULT_SETTINGS = {
    "dataset": "--dataset", "val_dataset": "--val-dataset", "dataset_options": "--dataset-option",
    "seed": "--seed", "width": "--width", "learn_upsampling": "--learn-upsampling",
    "val_limit": "--val-limit", "device": "--device", "amp": "--amp", "threads": "--threads",
    # Not restored (it is how the run is launched), only reported: N processes make steps of
    # N times the images (training.distributed).
    "world_size": "processes",
}


def run_settings(config: TrainConfig) -> dict[str, Any]:
    """The result-changing settings of ``config`` (:data:`RESULT_SETTINGS`; the recipe as a
    dict)."""
    info = {key: getattr(config, key) for key in RESULT_SETTINGS if key != "world_size"}
    info["world_size"] = config.world.world_size
    info["dataset_options"] = dict(config.dataset_options)
    info["val_limit"] = config.val_limit or None  # 0 and None both mean every image
    info["recipe"] = config.recipe.to_dict()
    return info


def changed_settings(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{option: (stopped run's value, this run's)}`` for each stored setting that differs.

    Settings a checkpoint does not hold (written by an older version) are not compared.
    """
    changes: dict[str, tuple[Any, Any]] = {}
    for key, flag in RESULT_SETTINGS.items():
        if key not in saved or key == "dataset_options":
            continue
        if saved[key] != now[key]:
            changes[flag] = (saved[key], now[key])
    before, after = saved.get("dataset_options") or {}, now["dataset_options"]
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changes[f"--dataset-option {key}"] = (before.get(key), after.get(key))
    old_recipe, new_recipe = saved.get("recipe") or {}, now["recipe"]
    for key, value in new_recipe.items():
        if key in old_recipe and key != "description" and old_recipe[key] != value:
            flag = "--recipe" if key == "name" else "--" + key.replace("_", "-")
            changes[flag] = (old_recipe[key], value)
    return changes


def _shown(value: Any) -> str:
    return "(default)" if value is None else str(value)


# --- evaluation -----------------------------------------------------------------------------

def evaluate(model, loader, *, num_classes: int, ignore_label: int, device: torch.device,
             amp: bool = False, progress: bool = False,
             reduce: Callable[[np.ndarray], np.ndarray] | None = None):
    """Score a single-head ``model`` on every batch of ``loader`` with one confusion matrix ->
    SegMetrics (:func:`evaluate_heads` for several heads).

    ``reduce`` maps the counts before the metrics are computed (several processes: their sum).
    """
    return evaluate_heads(model, loader, heads={SINGLE_HEAD: num_classes},
                          ignore_label=ignore_label, device=device, amp=amp, progress=progress,
                          reduce=reduce)[SINGLE_HEAD]


def evaluate_heads(model, loader, *, heads: dict[str, int], ignore_label: int,
                   device: torch.device, amp: bool = False, progress: bool = False,
                   reduce: Callable[[np.ndarray], np.ndarray] | None = None):
    """One confusion matrix per head over every batch of ``loader`` -> {head: SegMetrics}.

    ``heads`` is {head: classes}, the first scored against ``Batch.labels``, the others against
    ``Batch.head_labels``; the batch's ``inputs`` the model takes go to it as keywords.
    """
    from tqdm import tqdm

    matrices = {h: ConfusionMatrix(c, ignore_label=ignore_label) for h, c in heads.items()}
    names = list(getattr(model, "input_channels", {"image": 3}))
    primary = next(iter(heads))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="validation", leave=False, disable=not progress,
                              dynamic_ncols=True):
                if isinstance(batch, LoadError):
                    raise FCNError(batch.message)
                x, inputs = model_inputs(names, batch, device)
                with torch.autocast(device_type=device.type, enabled=amp):
                    out = head_scores(model(x, **inputs))
                for head, matrix in matrices.items():
                    labels = batch.labels if head == primary else batch.head_labels[head]
                    preds = out[head].argmax(1).to(torch.uint8).cpu().numpy()
                    for label, pred in zip(labels.numpy(), preds):
                        matrix.update(label, pred)
    finally:
        model.train(was_training)
    if reduce is not None:
        for matrix in matrices.values():
            matrix.matrix = reduce(matrix.matrix)
    return {head: matrix.compute() for head, matrix in matrices.items()}


class _StopRequest:
    """First Ctrl-C or SIGTERM: ask the loop to stop after this iteration and save. Second: stop
    at once (the last checkpoint stays intact)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *, announce: bool = True) -> None:
        self.requested = False
        self.announce = announce  # several processes: rank 0 alone says it
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals do not reach this thread anyway
            pass
        return self

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            if previous is None:  # installed from C; SIGINT's Python default interrupts
                previous = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, previous)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self._restore()  # a second signal acts at once (the last checkpoint stays intact)
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.announce:
            print(f"\ninterrupted ({name}): finishing this iteration and saving last.pt "
                  f"({name} again to quit without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        self._restore()


# --- the run --------------------------------------------------------------------------------

def _start_model(config: TrainConfig, data, resume_ckpt: dict[str, Any] | None):
    """Build the model for the training set ``data`` and load its starting weights (resume,
    coarser net, ImageNet or scratch).

    A head after the first takes its class count from the set as ``<head>_classes`` (SIFT
    Flow's ``geo_classes``); the model's heads and extra inputs must be the set's.
    """
    _seed_everything(config.seed)
    with torch.device("meta"):  # names only, before the class counts are passed
        _check_model_fits_data(create_model(config.arch, width=config.width), data,
                               config.dataset)
    head_kwargs = {f"{head}_classes": len(names) for head, names in data.extra_heads.items()}
    model = create_model(config.arch, num_classes=data.num_classes, width=config.width,
                         learn_upsampling=config.learn_upsampling, **head_kwargs)
    if resume_ckpt is not None:
        _check_checkpoint_compatible(Path(config.resume), resume_ckpt, model)
        model.load_state_dict(resume_ckpt["state_dict"])
    elif config.init_from is not None:
        try:
            init_from_coarser(model, config.init_from)
        except FCNError as exc:
            raise FCNError(f"--init-from {config.init_from}: {exc}") from None
    elif config.imagenet is not None:
        try:
            load_imagenet_weights(model, config.imagenet)
        except FCNError as exc:
            raise FCNError(f"--imagenet {config.imagenet}: {exc}") from None
    elif config.init_streams:
        flags = " ".join(f"--init-stream {k}={v}" for k, v in config.init_streams.items())
        try:
            transplant_streams(model, config.init_streams)
        except FCNError as exc:
            raise FCNError(f"{flags}: {exc}") from None
    return model


def model_inputs(names, batch, device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's inputs from a batch, by the model's input names (``input_channels``): the
    first positional, the others keywords. ``image`` is the batch's images, any other name its
    modality (an HHA-only net's one input is the HHA image, not the colour image)."""
    tensors = [(n, (batch.images if n == "image" else batch.inputs[n]).to(device, non_blocking=True))
               for n in names]
    return tensors[0][1], dict(tensors[1:])


def _io_meta(model, data) -> dict[str, Any]:
    """The model's ``inputs`` / ``heads`` fields of its metadata, each head after the first with
    its class names from the dataset (the first head's are ``ModelMeta.class_names``)."""
    extra = model.io_description()
    for head in extra.get("heads", [])[1:]:
        head["class_names"] = list(data.extra_heads[head["name"]])
    return extra


def _check_model_fits_data(model, data, spec: str) -> None:
    """The model's heads are the dataset's and every input after the first is in its samples."""
    if list(model.head_classes) != list(data.heads):
        raise FCNError(f"{model.arch} has the heads {', '.join(model.head_classes)} but the "
                       f"dataset {spec} labels {', '.join(data.heads)}; train a "
                       f"{'multi' if len(data.heads) > 1 else 'single'}-head net on it")
    missing = [name for name in model.input_channels
               if name != "image" and name not in data.extra_inputs]
    if missing:
        raise FCNError(f"{model.arch} takes the input(s) {', '.join(missing)}, which the dataset "
                       f"{spec} does not carry (it has: image"
                       f"{''.join(', ' + n for n in data.extra_inputs)})")


class _Run:
    """One training run's objects and the steps of the loop (see :func:`train`).

    With several processes (``config.world``) every rank builds the same run; ``comm`` carries
    what they exchange, and only rank 0 (``self.main``) writes files and prints.
    """

    def __init__(self, config: TrainConfig, comm: Collectives) -> None:
        self.config, self.comm, self.world = config, comm, comm.world
        self.main = self.world.main
        self.recipe = recipe = config.recipe
        self.device = comm.device
        if config.threads is not None:
            if config.threads < 1:
                raise FCNError(f"--threads must be >= 1, got {config.threads}")
            torch.set_num_threads(cap_threads(config.threads))
        starts = [x for x in (config.resume, config.init_from, config.imagenet,
                              config.init_streams or None) if x is not None]
        if len(starts) > 1:
            raise FCNError("--resume, --init-from, --imagenet and --init-stream are "
                           "exclusive: pick one starting point")
        resume_ckpt = _load_resume_checkpoint(Path(config.resume)) if config.resume else None
        self.train_set, self.val_set, self.val_spec = _open_datasets(config)
        if self.main:
            self.out = prepare_output(Path(config.out), resume=resume_ckpt is not None,
                                      overwrite=config.overwrite,
                                      inputs=[("--init-from checkpoint", config.init_from),
                                              ("--imagenet weights", config.imagenet),
                                              *[(f"--init-stream {k}", v)
                                                for k, v in config.init_streams.items()]],
                                      folders=_data_folders(self.train_set, self.val_set))
        else:
            self.out = Path(config.out)
        num_classes = self.train_set.num_classes
        if config.num_classes is not None and config.num_classes != num_classes:
            raise FCNError(f"--num-classes {config.num_classes} but the dataset "
                           f"{config.dataset} has {num_classes} classes")

        self.model = _start_model(config, self.train_set, resume_ckpt).to(self.device).train()
        self.heads = dict(self.model.head_classes)
        #: the inputs after the image, as the model names them
        self.input_names = tuple(self.model.input_channels)
        self.net = self.model  # what the training forward calls (the DDP wrapper: wrap())
        if not self.main:  # dropout draws from this rank's own stream (rank 0: the run's seed)
            _seed_everything(rank_seed(config.seed, self.world.rank))
        self.meta = ModelMeta(arch=self.model.arch, num_classes=num_classes,
                              class_names=list(self.train_set.class_names),
                              palette=list(self.train_set.palette),
                              ignore_label=self.train_set.ignore_label,
                              **({"mean": list(self.train_set.mean)}
                                 if self.train_set.mean is not None else {}),
                              arch_kwargs=dict(self.model.arch_kwargs),
                              **_io_meta(self.model, self.train_set))
        self.optimizer = create_optimizer(self.model, lr=recipe.lr, momentum=recipe.momentum,
                                          weight_decay=recipe.weight_decay,
                                          bias_lr_mult=recipe.bias_lr_mult)
        self.scaler = torch.amp.GradScaler("cuda") if config.amp else None
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.progress = _Progress()
        if resume_ckpt is not None:
            state = resume_ckpt["training_state"]
            # Only the per-parameter state (momentum buffers): the hyper-parameters are this
            # run's recipe, which may differ from the stopped run's (a longer schedule, say).
            current = self.optimizer.state_dict()
            self.optimizer.load_state_dict({**current, "state": state["optimizer"]["state"]})
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.progress = _Progress(
                iteration=int(state["iteration"]), epoch=int(state["epoch"]),
                position=int(state["position"]), losses=state["losses"].tolist(),
                evals=list(state["evals"]), best=state["best"], latest=state["latest"],
                elapsed_s=float(state["elapsed_s"]), resumes=list(state.get("resumes", [])))
            # Every rank continues its own random stream (a rank the stopped run did not have
            # keeps its fresh one; the changed process count is reported below).
            ranks_rng = [state["rng"], *state.get("rank_rng", [])]
            if self.world.rank < len(ranks_rng):
                restore_rng_state(ranks_rng[self.world.rank])

        self.ignore = self.train_set.ignore_label
        pin = self.device.type == "cuda"
        shard = {"rank": self.world.rank, "world_size": self.world.world_size}
        self.sampler = ResumableBatchSampler(len(self.train_set), batch_size=recipe.batch_size,
                                             seed=config.seed, shuffle=True, mirror=recipe.mirror,
                                             **shard)
        self.loader = make_loader(TorchSegmentation(self.train_set, mean=self.meta.mean),
                                  self.sampler, workers=config.workers, ignore_label=self.ignore,
                                  pin_memory=pin)
        self.val_loader = None
        if self.val_set is not None:
            if config.val_limit is not None and config.val_limit < 0:
                raise FCNError(f"--val-limit must be >= 0 (0: every validation image), got "
                               f"{config.val_limit}")
            n_val = min(config.val_limit or len(self.val_set), len(self.val_set))
            # Each rank scores its share (images rank, rank + N, ...): none twice, none padded.
            self.val_loader = make_loader(
                TorchSegmentation(self.val_set, mean=self.meta.mean),
                ResumableBatchSampler(n_val, batch_size=1, shuffle=False, **shard),
                workers=config.workers, ignore_label=self.ignore, pin_memory=pin)
        # Where this rank's reading of the image order stands: epoch, first item, and the number
        # (among all ranks' batches) of the batch there. The checkpointed (epoch, position) of
        # self.progress is the same on every rank and moves one whole step at a time.
        self.cursor = (self.progress.epoch, self.progress.position, 0)
        self.batches = None  # iterator over the rest of the cursor's epoch
        self.last_path, self.best_path = self.out / "last.pt", self.out / "best.pt"
        # Stored in last.pt so that `fcn-train --resume` needs no other option.
        self.run_info = run_settings(config)
        if resume_ckpt is not None:
            saved = resume_ckpt["training_state"].get("config", {})
            changes = changed_settings(saved, self.run_info)
            if changes:
                self.progress.resumes.append({"iteration": self.progress.iteration,
                                              "changed": changes})
                self.note(f"note: resuming {config.resume} with settings that differ from the "
                          f"stopped run (so the result differs from an uninterrupted run): "
                          + "; ".join(f"{k} {_shown(a)} -> {_shown(b)}"
                                      for k, (a, b) in changes.items()))

    def wrap(self) -> None:
        """Wrap the model in DistributedDataParallel (a collective: after every rank's setup)."""
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    def note(self, text: str) -> None:
        """A line on stderr, from rank 0 only."""
        if self.main:
            print(text, file=sys.stderr, flush=True)

    # -- data ---------------------------------------------------------------------------------
    def next_batch(self):
        """This rank's next batch of the resumable order (a LoadError is returned, not raised)."""
        while True:
            epoch, start, offset = self.cursor
            if self.batches is None:
                self.sampler.set_epoch(epoch, start=start, offset=offset)
                self.batches = iter(self.loader)
            try:
                return next(self.batches)
            except StopIteration:
                offset += self.sampler.batches_from(start)
                self.cursor, self.batches = (epoch + 1, 0, offset), None

    # -- one optimizer step -------------------------------------------------------------------
    def step(self) -> tuple[float, int]:
        """Accumulate ``recipe.accumulate`` batches (on every rank), step; returns (loss, images).

        The loss is the mean over ranks of each rank's accumulated loss, which is the loss one
        process accumulating all ranks' batches would report.
        """
        recipe, device, amp = self.recipe, self.device, self.config.amp
        # Read the whole step's batches first, so a file that cannot be read stops every rank
        # here, before the gradient exchange that all ranks must join.
        batches = [self.next_batch() for _ in range(recipe.accumulate)]
        self.comm.agree(next((b.message for b in batches if isinstance(b, LoadError)), None))
        self.optimizer.zero_grad(set_to_none=True)
        loss_value, images = 0.0, 0
        for k, batch in enumerate(batches):
            x, inputs = model_inputs(self.input_names, batch, device)
            y = batch.labels.to(device, non_blocking=True)
            # DDP exchanges the gradients once per step, after the last accumulated batch.
            local = k < len(batches) - 1 and self.world.distributed
            with self.net.no_sync() if local else contextlib.nullcontext():
                with torch.autocast(device_type=device.type, enabled=amp):
                    scores = self.net(x, **inputs)
                if isinstance(scores, dict):  # several heads: their losses summed (reference)
                    labels = {h: batch.head_labels[h].to(device, non_blocking=True)
                              for h in batch.head_labels}
                    labels[next(iter(self.heads))] = y
                    loss = sum(segmentation_loss(scores[h], labels[h],
                                                 normalize=recipe.normalize_loss,
                                                 ignore_label=self.ignore)
                               for h in self.heads) / recipe.accumulate
                else:
                    loss = segmentation_loss(scores, y, normalize=recipe.normalize_loss,
                                             ignore_label=self.ignore) / recipe.accumulate
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_value += loss.item()
            images += len(batch)
        if self.world.distributed:
            total, images = self.comm.sum([loss_value, images])
            loss_value, images = total / self.world.world_size, int(images)
        if not math.isfinite(loss_value) and self.scaler is None:
            # The loss is the ranks' mean: every rank stops here.
            self.comm.agree(f"the training loss became {loss_value} at iteration "
                            f"{self.progress.iteration + 1}; lower --lr (last.pt keeps the last "
                            "good state)")
        if recipe.clip_grad_norm > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, recipe.clip_grad_norm)
        if self.scaler is not None:  # skips the step when the scaled gradients overflowed
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        p = self.progress
        p.epoch, p.position = self.sampler.advance(
            p.epoch, p.position, recipe.accumulate * self.world.world_size)
        p.iteration += 1
        p.losses.append(loss_value)
        return loss_value, images

    # -- evaluation and files -----------------------------------------------------------------
    def evaluate(self) -> dict[str, Any] | None:
        """The validation metrics (SegMetrics.as_dict() + iteration), None without a val set.

        Every rank scores its share; the confusion matrices are summed, so the metrics are
        exactly those of the whole set.
        """
        if self.val_loader is None:
            return None
        per_head = evaluate_heads(self.model, self.val_loader, heads=self.heads,
                                  ignore_label=self.ignore, device=self.device,
                                  amp=self.config.amp,
                                  progress=self.config.progress and self.main,
                                  reduce=self.comm.sum_counts)
        primary, *others = per_head
        metrics = {**per_head[primary].as_dict(), "iteration": self.progress.iteration}
        if others:  # the first head's metrics stay at the top (best.pt is chosen by them)
            metrics["heads"] = {h: per_head[h].as_dict() for h in others}
        return metrics

    def _checkpoint_meta(self) -> ModelMeta:
        return self.meta.replace(extra={**self.meta.extra,
                                        "training": {**self.run_info,
                                                     "iteration": self.progress.iteration}})

    def save_last(self) -> None:
        """Write last.pt (rank 0) with every rank's random state (gathered from all ranks)."""
        rngs = self.comm.gather(capture_rng_state())
        if not self.main:
            return
        p = self.progress
        state = {
            "format": STATE_FORMAT, "iteration": p.iteration, "epoch": p.epoch,
            "position": p.position, "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rngs[0], "rank_rng": rngs[1:],
            "losses": torch.tensor(p.losses, dtype=torch.float64),
            "evals": p.evals, "best": p.best, "latest": p.latest, "elapsed_s": p.elapsed_s,
            "resumes": p.resumes, "config": self.run_info,
        }
        save_checkpoint(self.last_path, model=self.model, meta=self._checkpoint_meta(),
                        metrics=p.latest, training_state=state)

    def evaluate_and_save(self, interval_loss: float) -> None:
        """Evaluate; write last.pt, best.pt (when the mean IU improved), log.jsonl, curves.png."""
        p = self.progress
        metrics = self.evaluate()
        record: dict[str, Any] = {"iteration": p.iteration, "train_loss": interval_loss,
                                  "epoch": p.epoch, "elapsed_s": round(p.elapsed_s, 3)}
        improved = False
        if metrics is not None:
            record.update({k: metrics[k] for k in METRIC_NAMES})
            for head, head_metrics in metrics.get("heads", {}).items():
                record.update({f"{head}_{k}": head_metrics[k] for k in METRIC_NAMES})
            improved = p.best is None or (metrics["mean_iu"] or 0.0) > (p.best["mean_iu"] or 0.0)
            if improved:
                p.best = metrics
        p.latest = metrics
        p.evals.append(record)
        self.save_last()
        if not self.main:
            return
        if improved:
            save_checkpoint(self.best_path, model=self.model, meta=self._checkpoint_meta(),
                            metrics=metrics)
        write_log(self.out / "log.jsonl", p.evals)
        plot_curves(self.out / "curves.png", p.losses, p.evals)

    def loop(self) -> None:
        """Step until ``max_iters``; evaluate and save every ``eval_every`` and at the end."""
        from tqdm import tqdm

        recipe, p = self.recipe, self.progress
        bar = tqdm(total=recipe.max_iters, initial=min(p.iteration, recipe.max_iters),
                   desc=f"train {self.model.arch}", unit="it",
                   disable=not (self.config.progress and self.main), dynamic_ncols=True)
        interval_start = p.evals[-1]["iteration"] if p.evals else 0
        try:
            with _StopRequest(announce=self.main) as stop:
                while p.iteration < recipe.max_iters:
                    started = time.perf_counter()
                    loss, images = self.step()
                    seconds = time.perf_counter() - started
                    p.elapsed_s += seconds
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", img_s=f"{images / seconds:.1f}",
                                    refresh=False)
                    if self.config.on_iteration is not None:
                        self.config.on_iteration(p.iteration, loss)
                    if p.iteration % recipe.eval_every == 0 or p.iteration == recipe.max_iters:
                        self.evaluate_and_save(float(np.mean(p.losses[interval_start:])))
                        interval_start = p.iteration
                        if p.latest is not None and self.main:
                            bar.write(f"iteration {p.iteration}: mean IU "
                                      f"{format_pct(p.latest['mean_iu'])} %, pixel accuracy "
                                      f"{format_pct(p.latest['pixel_accuracy'])} %")
                    # A stop asked on any rank stops every rank after this same step.
                    if self.comm.any(stop.requested):
                        self.save_last()
                        self.comm.barrier()  # no rank exits while rank 0 writes
                        if self.main:
                            bar.write(f"saved {self.last_path} at iteration {p.iteration}; "
                                      f"continue with --resume {self.last_path}")
                        raise KeyboardInterrupt
        finally:
            bar.close()

    def report(self) -> TrainResult:
        """Write report.json/.md (rank 0) and return the result (evaluates if the run had
        nothing to do)."""
        p = self.progress
        final = p.latest if p.latest is not None and p.latest["iteration"] == p.iteration \
            else self.evaluate()
        last_interval = p.losses[-self.recipe.eval_every:] or [float("nan")]
        best_checkpoint = self.best_path if self.best_path.exists() else None
        report = {
            "arch": self.model.arch, "arch_kwargs": dict(self.model.arch_kwargs),
            "dataset": self.config.dataset, "val_dataset": self.val_spec,
            "num_classes": self.meta.num_classes, "class_names": list(self.meta.class_names),
            **({"heads": self.heads,
                "head_class_names": {h: list(n) for h, n in self.train_set.extra_heads.items()}}
               if len(self.heads) > 1 else {}),
            "recipe": self.recipe.to_dict(), "iterations": p.iteration,
            "elapsed_s": p.elapsed_s, "device": str(self.device), "seed": self.config.seed,
            "processes": self.world.world_size,
            "final_train_loss": float(np.mean(last_interval)), "final": final, "best": p.best,
            "resumes": p.resumes,
            "checkpoints": {"last": str(self.last_path),
                            "best": str(best_checkpoint) if best_checkpoint else None},
        }
        report_json, report_md = self.out / "report.json", self.out / "report.md"
        if self.main:
            report_json, report_md = write_report(self.out, report)
        return TrainResult(iterations=p.iteration, losses=list(p.losses), final=final,
                           best=p.best, last_checkpoint=self.last_path,
                           best_checkpoint=best_checkpoint, report_json=report_json,
                           report_md=report_md, elapsed_s=p.elapsed_s)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)



def train(config: TrainConfig) -> TrainResult:
    """Train as ``config`` says and return the result; see the module docstring.

    With ``config.world`` of several processes (torchrun) every process calls this; a user
    error met by any of them stops all of them (rank 0 reports it).
    """
    comm = Collectives(config.world, resolve_device(config.device, amp=config.amp,
                                                    world=config.world))
    comm.start()
    try:
        try:
            run = _Run(config, comm)
        except FCNError as exc:
            if not config.world.distributed:
                raise
            comm.agree(str(exc))
        comm.agree(None)
        run.wrap()
        run.loop()
        return run.report()
    finally:
        comm.close()
