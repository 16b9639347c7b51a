"""The iteration-based training loop: accumulation, evaluation, atomic checkpoints, exact resume.

One iteration = one optimizer step over ``recipe.accumulate`` batches. Every ``eval_every``
iterations (and at the end) the model is scored on the validation set with the four FCN metrics,
``last.pt`` is written (weights, metadata and the whole training state), ``best.pt`` when the mean
IU improves, and ``log.jsonl`` / ``curves.png`` are refreshed. Everything is written atomically.

Resuming restores the weights, the optimizer (momentum buffers), the iteration, the position in
the epoch's image order and the torch/numpy/python random states, so on a CPU a run stopped and
resumed ends with weights bit-identical to an uninterrupted one. The first Ctrl-C finishes the
current iteration, saves ``last.pt`` and stops; a second one stops at once. Any other error stops
without writing, so the last good checkpoint is kept.
"""
from __future__ import annotations

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

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta
from training.data import LoadError, ResumableBatchSampler, TorchSegmentation, make_loader
from training.losses import segmentation_loss
from training.optim import create_optimizer
from training.recipes import Recipe
from training.report import METRIC_NAMES, plot_curves, write_log, write_report

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
    coarser trained net (FCN-32s -> 16s -> 8s), ``imagenet`` from an ImageNet classifier;
    ``resume`` continues a run from its ``last.pt``. ``on_iteration(iteration, loss)`` is called
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
    resume: Path | None = None
    overwrite: bool = False
    seed: int = 0
    workers: int = 0
    device: str | None = None
    amp: bool = False
    threads: int | None = None
    val_limit: int | None = None
    progress: bool = True
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


# --- setup ----------------------------------------------------------------------------------

def resolve_device(name: str | None, *, amp: bool = False) -> torch.device:
    """``cpu``/``cuda[:N]``/None (cuda when available); cuda without CUDA is a user error."""
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
    return device


#: Every file a run writes into its --out folder.
RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "curves.png", "report.json", "report.md")


def prepare_output(out: Path, *, resume: bool, overwrite: bool,
                   inputs: Sequence[tuple[str, Path | None]] = (),
                   folders: Sequence[tuple[str, Path | None]] = ()) -> Path:
    """Create (and probe) the output folder; refuse to clobber another run's checkpoints unless
    asked, and always refuse when a run file would overwrite one of ``inputs`` (--init-from...)
    or land in one of the data ``folders`` (curves.png would become a training image)."""
    from fcn_deploy.fileio import RunFiles

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
    from fcn_deploy.datasets import create_dataset

    options = dict(config.dataset_options)
    train_set = create_dataset(config.dataset, **options)
    val_spec, val_options = config.val_dataset, options
    if val_spec is None and config.dataset.partition(":")[0].strip().lower() == "synthetic":
        val_spec = f"synthetic:{SYNTHETIC_VAL_IMAGES}"
        val_options = {**options, "seed": int(options.get("seed") or 0) + SYNTHETIC_VAL_SEED}
    val_set = create_dataset(val_spec, **val_options) if val_spec else None
    if val_set is not None and val_set.num_classes != train_set.num_classes:
        raise FCNError(f"validation set {val_spec} has {val_set.num_classes} classes but the "
                       f"training set {config.dataset} has {train_set.num_classes}")
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
    from fcn_deploy.models import load_checkpoint

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


# --- evaluation -----------------------------------------------------------------------------

def evaluate(model, loader, *, num_classes: int, ignore_label: int, device: torch.device,
             amp: bool = False, progress: bool = False):
    """Score ``model`` on every batch of ``loader`` with one confusion matrix -> SegMetrics."""
    from tqdm import tqdm

    from fcn_deploy.metrics import ConfusionMatrix

    matrix = ConfusionMatrix(num_classes, ignore_label=ignore_label)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="validation", leave=False, disable=not progress,
                              dynamic_ncols=True):
                if isinstance(batch, LoadError):
                    raise FCNError(batch.message)
                with torch.autocast(device_type=device.type, enabled=amp):
                    scores = model(batch.images.to(device))
                preds = scores.argmax(1).to(torch.uint8).cpu().numpy()
                for label, pred in zip(batch.labels.numpy(), preds):
                    matrix.update(label, pred)
    finally:
        model.train(was_training)
    return matrix.compute()


class _StopRequest:
    """First Ctrl-C (or SIGTERM): ask the loop to stop after this iteration and save. Second:
    stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous = None

    def __enter__(self) -> "_StopRequest":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._previous_term = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        except ValueError:  # not the main thread: Ctrl-C does not reach this thread anyway
            pass
        return self

    def _restore(self) -> None:
        previous = self._previous if self._previous is not None else signal.default_int_handler
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, getattr(self, "_previous_term", None) or signal.SIG_DFL)

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self._restore()  # a second Ctrl-C interrupts at once (the last checkpoint stays intact)
        print(f"\n{'terminated' if signum == signal.SIGTERM else 'interrupted'}: finishing this "
              "iteration and saving last.pt (Ctrl-C again to quit without saving)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._installed:
            self._restore()


# --- the run --------------------------------------------------------------------------------

def _start_model(config: TrainConfig, num_classes: int, resume_ckpt: dict[str, Any] | None):
    """Build the model and load its starting weights (resume, coarser net, ImageNet or scratch)."""
    from fcn_deploy.models import create_model

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    model = create_model(config.arch, num_classes=num_classes, width=config.width,
                         learn_upsampling=config.learn_upsampling)
    if resume_ckpt is not None:
        _check_checkpoint_compatible(Path(config.resume), resume_ckpt, model)
        model.load_state_dict(resume_ckpt["state_dict"])
    elif config.init_from is not None:
        from fcn_deploy.models.surgery import init_from_coarser

        try:
            init_from_coarser(model, config.init_from)
        except FCNError as exc:
            raise FCNError(f"--init-from {config.init_from}: {exc}") from None
    elif config.imagenet is not None:
        from fcn_deploy.models.surgery import load_imagenet_weights

        try:
            load_imagenet_weights(model, config.imagenet)
        except FCNError as exc:
            raise FCNError(f"--imagenet {config.imagenet}: {exc}") from None
    return model


class _Run:
    """One training run's objects and the steps of the loop (see :func:`train`)."""

    def __init__(self, config: TrainConfig) -> None:
        from fcn_deploy.models import restore_rng_state

        self.config = config
        self.recipe = recipe = config.recipe
        self.device = resolve_device(config.device, amp=config.amp)
        if config.threads is not None:
            if config.threads < 1:
                raise FCNError(f"--threads must be >= 1, got {config.threads}")
            from fcn_deploy.runtime.registry import cap_threads

            torch.set_num_threads(cap_threads(config.threads))
        starts = [x for x in (config.resume, config.init_from, config.imagenet) if x is not None]
        if len(starts) > 1:
            raise FCNError("--resume, --init-from and --imagenet are exclusive: pick one "
                           "starting point")
        resume_ckpt = _load_resume_checkpoint(Path(config.resume)) if config.resume else None
        self.train_set, self.val_set, self.val_spec = _open_datasets(config)
        self.out = prepare_output(Path(config.out), resume=resume_ckpt is not None,
                                  overwrite=config.overwrite,
                                  inputs=[("--init-from checkpoint", config.init_from),
                                          ("--imagenet weights", config.imagenet)],
                                  folders=_data_folders(self.train_set, self.val_set))
        num_classes = self.train_set.num_classes
        if config.num_classes is not None and config.num_classes != num_classes:
            raise FCNError(f"--num-classes {config.num_classes} but the dataset "
                           f"{config.dataset} has {num_classes} classes")

        self.model = _start_model(config, num_classes, resume_ckpt).to(self.device).train()
        self.meta = ModelMeta(arch=self.model.arch, num_classes=num_classes,
                              class_names=list(self.train_set.class_names),
                              palette=list(self.train_set.palette),
                              ignore_label=self.train_set.ignore_label,
                              arch_kwargs=dict(self.model.arch_kwargs))
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
                elapsed_s=float(state["elapsed_s"]))
            restore_rng_state(state["rng"])

        self.ignore = self.train_set.ignore_label
        pin = self.device.type == "cuda"
        self.sampler = ResumableBatchSampler(len(self.train_set), batch_size=recipe.batch_size,
                                             seed=config.seed, shuffle=True, mirror=recipe.mirror)
        self.loader = make_loader(TorchSegmentation(self.train_set, mean=self.meta.mean),
                                  self.sampler, workers=config.workers, ignore_label=self.ignore,
                                  pin_memory=pin)
        self.val_loader = None
        if self.val_set is not None:
            n_val = len(self.val_set) if config.val_limit is None \
                else max(1, min(config.val_limit, len(self.val_set)))
            self.val_loader = make_loader(
                TorchSegmentation(self.val_set, mean=self.meta.mean),
                ResumableBatchSampler(n_val, batch_size=1, shuffle=False),
                workers=config.workers, ignore_label=self.ignore, pin_memory=pin)
        self.batches = None  # iterator over the rest of the current epoch
        self.last_path, self.best_path = self.out / "last.pt", self.out / "best.pt"
        # Stored in last.pt so that `fcn-train --resume` needs no other option.
        self.run_info = {"dataset": config.dataset, "val_dataset": config.val_dataset,
                         "dataset_options": dict(config.dataset_options), "seed": config.seed,
                         "recipe": recipe.to_dict(), "width": config.width,
                         "learn_upsampling": config.learn_upsampling}

    # -- data ---------------------------------------------------------------------------------
    def next_batch(self):
        """The next batch of the resumable order; moves the epoch/position bookkeeping."""
        progress = self.progress
        while True:
            if self.batches is None:
                self.sampler.set_epoch(progress.epoch, start=progress.position)
                self.batches = iter(self.loader)
            try:
                batch = next(self.batches)
            except StopIteration:
                progress.epoch, progress.position, self.batches = progress.epoch + 1, 0, None
                continue
            if isinstance(batch, LoadError):
                raise FCNError(batch.message)
            progress.position += len(batch)
            return batch

    # -- one optimizer step -------------------------------------------------------------------
    def step(self) -> tuple[float, int]:
        """Accumulate ``recipe.accumulate`` batches, step; returns (loss, images)."""
        recipe, device, amp = self.recipe, self.device, self.config.amp
        self.optimizer.zero_grad(set_to_none=True)
        loss_value, images = 0.0, 0
        for _ in range(recipe.accumulate):
            batch = self.next_batch()
            x = batch.images.to(device, non_blocking=True)
            y = batch.labels.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, enabled=amp):
                scores = self.model(x)
            loss = segmentation_loss(scores, y, normalize=recipe.normalize_loss,
                                     ignore_label=self.ignore) / recipe.accumulate
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_value += loss.item()
            images += len(batch)
        if not math.isfinite(loss_value) and self.scaler is None:
            raise FCNError(f"the training loss became {loss_value} at iteration "
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
        self.progress.iteration += 1
        self.progress.losses.append(loss_value)
        return loss_value, images

    # -- evaluation and files -----------------------------------------------------------------
    def evaluate(self) -> dict[str, Any] | None:
        """The validation metrics (SegMetrics.as_dict() + iteration), None without a val set."""
        if self.val_loader is None:
            return None
        seg = evaluate(self.model, self.val_loader, num_classes=self.meta.num_classes,
                       ignore_label=self.ignore, device=self.device, amp=self.config.amp,
                       progress=self.config.progress)
        return {**seg.as_dict(), "iteration": self.progress.iteration}

    def _checkpoint_meta(self) -> ModelMeta:
        return self.meta.replace(extra={"training": {**self.run_info,
                                                     "iteration": self.progress.iteration}})

    def save_last(self) -> None:
        from fcn_deploy.models import capture_rng_state, save_checkpoint

        p = self.progress
        state = {
            "format": STATE_FORMAT, "iteration": p.iteration, "epoch": p.epoch,
            "position": p.position, "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": capture_rng_state(), "losses": torch.tensor(p.losses, dtype=torch.float64),
            "evals": p.evals, "best": p.best, "latest": p.latest, "elapsed_s": p.elapsed_s,
            "config": self.run_info,
        }
        save_checkpoint(self.last_path, model=self.model, meta=self._checkpoint_meta(),
                        metrics=p.latest, training_state=state)

    def evaluate_and_save(self, interval_loss: float) -> None:
        """Evaluate; write last.pt, best.pt (when the mean IU improved), log.jsonl, curves.png."""
        from fcn_deploy.models import save_checkpoint

        p = self.progress
        metrics = self.evaluate()
        record: dict[str, Any] = {"iteration": p.iteration, "train_loss": interval_loss,
                                  "epoch": p.epoch, "elapsed_s": round(p.elapsed_s, 3)}
        improved = False
        if metrics is not None:
            record.update({k: metrics[k] for k in METRIC_NAMES})
            improved = p.best is None or (metrics["mean_iu"] or 0.0) > (p.best["mean_iu"] or 0.0)
            if improved:
                p.best = metrics
        p.latest = metrics
        p.evals.append(record)
        self.save_last()
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
                   desc=f"train {self.model.arch}", unit="it", disable=not self.config.progress,
                   dynamic_ncols=True)
        interval_start = p.evals[-1]["iteration"] if p.evals else 0
        try:
            with _StopRequest() as stop:
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
                        if p.latest is not None:
                            bar.write(f"iteration {p.iteration}: mean IU "
                                      f"{_pct(p.latest['mean_iu'])} %, pixel accuracy "
                                      f"{_pct(p.latest['pixel_accuracy'])} %")
                    if stop.requested:
                        self.save_last()
                        bar.write(f"saved {self.last_path} at iteration {p.iteration}; "
                                  f"continue with --resume {self.last_path}")
                        raise KeyboardInterrupt
        finally:
            bar.close()

    def report(self) -> TrainResult:
        """Write report.json/.md and return the result (evaluates if the run had nothing to do)."""
        p = self.progress
        final = p.latest if p.latest is not None and p.latest["iteration"] == p.iteration \
            else self.evaluate()
        last_interval = p.losses[-self.recipe.eval_every:] or [float("nan")]
        best_checkpoint = self.best_path if self.best_path.exists() else None
        report = {
            "arch": self.model.arch, "arch_kwargs": dict(self.model.arch_kwargs),
            "dataset": self.config.dataset, "val_dataset": self.val_spec,
            "num_classes": self.meta.num_classes, "class_names": list(self.meta.class_names),
            "recipe": self.recipe.to_dict(), "iterations": p.iteration,
            "elapsed_s": p.elapsed_s, "device": str(self.device), "seed": self.config.seed,
            "final_train_loss": float(np.mean(last_interval)), "final": final, "best": p.best,
            "checkpoints": {"last": str(self.last_path),
                            "best": str(best_checkpoint) if best_checkpoint else None},
        }
        report_json, report_md = write_report(self.out, report)
        return TrainResult(iterations=p.iteration, losses=list(p.losses), final=final,
                           best=p.best, last_checkpoint=self.last_path,
                           best_checkpoint=best_checkpoint, report_json=report_json,
                           report_md=report_md, elapsed_s=p.elapsed_s)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def train(config: TrainConfig) -> TrainResult:
    """Train as ``config`` says and return the result; see the module docstring."""
    run = _Run(config)
    run.loop()
    return run.report()
