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

import dataclasses
import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
    best: dict[str, Any] | None = None
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
    if device.type not in ("cpu", "cuda"):
        raise FCNError(f"--device {name}: only cpu and cuda are supported")
    if amp and device.type != "cuda":
        raise FCNError("--amp (mixed precision) needs --device cuda")
    return device


def prepare_output(out: Path, *, resume: bool, overwrite: bool) -> Path:
    """Create the output folder; refuse to clobber another run's checkpoints unless asked."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FCNError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
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


def _check_checkpoint_compatible(path: Path, meta: ModelMeta, model, what: str) -> None:
    if meta.arch != model.arch:
        raise FCNError(f"{what} {path} holds a {meta.arch} model; this run trains {model.arch} "
                       "(pass the same --arch, or start a new run)")
    if meta.num_classes != model.num_classes:
        raise FCNError(f"{what} {path} has {meta.num_classes} classes; this run's data has "
                       f"{model.num_classes}")
    if dict(meta.arch_kwargs) != dict(model.arch_kwargs):
        raise FCNError(f"{what} {path} was built with {meta.arch_kwargs}; this run builds "
                       f"{model.arch_kwargs} (check --width / --learn-upsampling)")


def _load_resume_checkpoint(path: Path) -> dict[str, Any]:
    from fcn_deploy.models import load_checkpoint

    ckpt = load_checkpoint(path)
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
    so that ``fcn-train --resume last.pt`` needs no other option."""
    ckpt = _load_resume_checkpoint(Path(path))
    return {**ckpt["training_state"].get("config", {}), "arch": ckpt["meta"]["arch"]}


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
    """First Ctrl-C: ask the loop to stop after this iteration and save. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_StopRequest":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C cannot reach us here anyway
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        print("\ninterrupted: finishing this iteration and saving last.pt "
              "(Ctrl-C again to quit without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --- the run --------------------------------------------------------------------------------

def train(config: TrainConfig) -> TrainResult:
    """Train as ``config`` says and return the result; see the module docstring."""
    from tqdm import tqdm

    from fcn_deploy.models import (capture_rng_state, create_model, restore_rng_state,
                                   save_checkpoint)

    recipe = config.recipe
    device = resolve_device(config.device, amp=config.amp)
    if config.threads is not None:
        if config.threads < 1:
            raise FCNError(f"--threads must be >= 1, got {config.threads}")
        torch.set_num_threads(config.threads)
    if sum(x is not None for x in (config.resume, config.init_from, config.imagenet)) > 1:
        raise FCNError("--resume, --init-from and --imagenet are exclusive: pick one starting point")
    resume_ckpt = _load_resume_checkpoint(Path(config.resume)) if config.resume else None
    train_set, val_set, val_spec = _open_datasets(config)
    out = prepare_output(Path(config.out), resume=resume_ckpt is not None,
                         overwrite=config.overwrite)
    num_classes = train_set.num_classes
    if config.num_classes is not None and config.num_classes != num_classes:
        raise FCNError(f"--num-classes {config.num_classes} but the dataset {config.dataset} has "
                       f"{num_classes} classes")

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    model = create_model(config.arch, num_classes=num_classes, width=config.width,
                         learn_upsampling=config.learn_upsampling)
    if resume_ckpt is not None:
        _check_checkpoint_compatible(Path(config.resume), ModelMeta.from_dict(resume_ckpt["meta"]),
                                     model, "--resume checkpoint")
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
    model.to(device)
    model.train()

    meta = ModelMeta(arch=model.arch, num_classes=num_classes,
                     class_names=list(train_set.class_names), palette=list(train_set.palette),
                     ignore_label=train_set.ignore_label, arch_kwargs=dict(model.arch_kwargs))
    optimizer = create_optimizer(model, lr=recipe.lr, momentum=recipe.momentum,
                                 weight_decay=recipe.weight_decay,
                                 bias_lr_mult=recipe.bias_lr_mult)
    scaler = torch.amp.GradScaler("cuda") if config.amp else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    progress = _Progress()
    if resume_ckpt is not None:
        state = resume_ckpt["training_state"]
        optimizer.load_state_dict(state["optimizer"])
        # The recipe may have been changed on resume (e.g. a longer schedule or another rate).
        for group in optimizer.param_groups:
            mult = recipe.bias_lr_mult if group.get("name") == "biases" else 1.0
            group.update(lr=recipe.lr * mult, momentum=recipe.momentum)
            if group.get("name") != "biases":
                group["weight_decay"] = recipe.weight_decay
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        progress = _Progress(iteration=int(state["iteration"]), epoch=int(state["epoch"]),
                             position=int(state["position"]),
                             losses=[float(v) for v in state["losses"].tolist()],
                             evals=list(state["evals"]), best=state["best"],
                             elapsed_s=float(state["elapsed_s"]))
        restore_rng_state(state["rng"])

    ignore = train_set.ignore_label
    pin = device.type == "cuda"
    sampler = ResumableBatchSampler(len(train_set), batch_size=recipe.batch_size, seed=config.seed,
                                    shuffle=True, mirror=recipe.mirror)
    loader = make_loader(TorchSegmentation(train_set, mean=meta.mean), sampler,
                         workers=config.workers, ignore_label=ignore, pin_memory=pin)
    val_loader = None
    if val_set is not None:
        n_val = len(val_set) if config.val_limit is None else min(config.val_limit, len(val_set))
        val_sampler = ResumableBatchSampler(n_val, batch_size=1, shuffle=False)
        val_loader = make_loader(TorchSegmentation(val_set, mean=meta.mean), val_sampler,
                                 workers=config.workers, ignore_label=ignore, pin_memory=pin)

    last_path, best_path = out / "last.pt", out / "best.pt"
    run_info = {"dataset": config.dataset, "val_dataset": config.val_dataset,
                "dataset_options": dict(config.dataset_options), "seed": config.seed,
                "recipe": recipe.to_dict(), "width": config.width,
                "learn_upsampling": config.learn_upsampling}

    def checkpoint_meta() -> ModelMeta:
        return meta.replace(extra={"training": {**run_info, "iteration": progress.iteration}})

    def save_last(metrics: dict[str, Any] | None) -> None:
        state = {
            "format": STATE_FORMAT, "iteration": progress.iteration, "epoch": progress.epoch,
            "position": progress.position, "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": capture_rng_state(), "losses": torch.tensor(progress.losses, dtype=torch.float64),
            "evals": progress.evals, "best": progress.best, "elapsed_s": progress.elapsed_s,
            "config": run_info,
        }
        save_checkpoint(last_path, model=model, meta=checkpoint_meta(), metrics=metrics,
                        training_state=state)

    latest = {"metrics": None, "segmetrics": None}

    def checkpoint_and_log(interval_loss: float) -> None:
        record: dict[str, Any] = {"iteration": progress.iteration, "train_loss": interval_loss,
                                  "epoch": progress.epoch, "elapsed_s": round(progress.elapsed_s, 3)}
        metrics = None
        if val_loader is not None:
            seg = evaluate(model, val_loader, num_classes=num_classes, ignore_label=ignore,
                           device=device, amp=config.amp, progress=config.progress)
            metrics = {**seg.as_dict(), "iteration": progress.iteration}
            record.update({k: metrics[k] for k in METRIC_NAMES})
            latest["segmetrics"] = seg
            improved = progress.best is None or (metrics["mean_iu"] or 0.0) > \
                (progress.best["mean_iu"] or 0.0)
            if improved:
                progress.best = metrics
        latest["metrics"] = metrics
        progress.evals.append(record)
        save_last(metrics)
        if metrics is not None and progress.best is metrics:
            save_checkpoint(best_path, model=model, meta=checkpoint_meta(), metrics=metrics)
        write_log(out / "log.jsonl", progress.evals)
        plot_curves(out / "curves.png", progress.losses, progress.evals)

    batches = None  # the iterator over the current epoch

    def next_batch():
        nonlocal batches
        while True:
            if batches is None:
                sampler.set_epoch(progress.epoch, start=progress.position)
                batches = iter(loader)
            try:
                batch = next(batches)
            except StopIteration:
                progress.epoch, progress.position, batches = progress.epoch + 1, 0, None
                continue
            if isinstance(batch, LoadError):
                raise FCNError(batch.message)
            progress.position += len(batch)
            return batch

    bar = tqdm(total=recipe.max_iters, initial=min(progress.iteration, recipe.max_iters),
               desc=f"train {model.arch}", unit="it", disable=not config.progress,
               dynamic_ncols=True)
    interval_start = progress.evals[-1]["iteration"] if progress.evals else 0
    try:
        with _StopRequest() as stop:
            while progress.iteration < recipe.max_iters:
                started = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss_value, images = 0.0, 0
                for _ in range(recipe.accumulate):
                    batch = next_batch()
                    x = batch.images.to(device, non_blocking=pin)
                    y = batch.labels.to(device, non_blocking=pin)
                    with torch.autocast(device_type=device.type, enabled=config.amp):
                        scores = model(x)
                    loss = segmentation_loss(scores, y, normalize=recipe.normalize_loss,
                                             ignore_label=ignore) / recipe.accumulate
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                    loss_value += loss.item()
                    images += len(batch)
                if not math.isfinite(loss_value) and scaler is None:
                    raise FCNError(f"the training loss became {loss_value} at iteration "
                                   f"{progress.iteration + 1}; lower --lr (last.pt keeps the "
                                   "last good state)")
                if recipe.clip_grad_norm > 0:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable, recipe.clip_grad_norm)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                progress.iteration += 1
                progress.losses.append(loss_value)
                seconds = time.perf_counter() - started
                progress.elapsed_s += seconds
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4g}", img_s=f"{images / seconds:.1f}",
                                refresh=False)
                if config.on_iteration is not None:
                    config.on_iteration(progress.iteration, loss_value)
                if progress.iteration % recipe.eval_every == 0 \
                        or progress.iteration == recipe.max_iters:
                    interval = progress.losses[interval_start:]
                    checkpoint_and_log(float(np.mean(interval)))
                    interval_start = progress.iteration
                    if latest["metrics"] is not None:
                        bar.write(f"iteration {progress.iteration}: mean IU "
                                  f"{100 * (latest['metrics']['mean_iu'] or 0):.1f} %, "
                                  f"pixel accuracy "
                                  f"{100 * (latest['metrics']['pixel_accuracy'] or 0):.1f} %")
                if stop.requested:
                    save_last(latest["metrics"])
                    bar.write(f"saved {last_path} at iteration {progress.iteration}; "
                              f"continue with --resume {last_path}")
                    raise KeyboardInterrupt
    finally:
        bar.close()

    # The final evaluation exists unless the run was already complete when resumed.
    if progress.evals and progress.evals[-1]["iteration"] == progress.iteration:
        final = latest["metrics"] if latest["metrics"] is not None else \
            (progress.best if progress.best and progress.best["iteration"] == progress.iteration
             else None)
    else:
        final = None
    if final is None and val_loader is not None:
        seg = evaluate(model, val_loader, num_classes=num_classes, ignore_label=ignore,
                       device=device, amp=config.amp, progress=config.progress)
        final = {**seg.as_dict(), "iteration": progress.iteration}

    last_interval = progress.losses[-recipe.eval_every:] or [float("nan")]
    report = {
        "arch": model.arch, "arch_kwargs": dict(model.arch_kwargs), "dataset": config.dataset,
        "val_dataset": val_spec, "num_classes": num_classes,
        "class_names": list(train_set.class_names), "recipe": recipe.to_dict(),
        "iterations": progress.iteration, "elapsed_s": progress.elapsed_s, "device": str(device),
        "seed": config.seed, "final_train_loss": float(np.mean(last_interval)),
        "final": final, "best": progress.best,
        "checkpoints": {"last": str(last_path),
                        "best": str(best_path) if best_path.exists() else None},
    }
    report_json, report_md = write_report(out, report)
    return TrainResult(iterations=progress.iteration, losses=list(progress.losses), final=final,
                       best=progress.best, last_checkpoint=last_path,
                       best_checkpoint=best_path if best_path.exists() else None,
                       report_json=report_json, report_md=report_md,
                       elapsed_s=progress.elapsed_s)
