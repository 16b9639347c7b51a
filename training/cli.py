"""``fcn-train``: train an FCN (reference recipes, staged or at once, resumable).

Examples::

    fcn-train --arch fcn8s_vgg16 --width 0.0625 --dataset synthetic --out runs/demo
    fcn-train --arch fcn32s_vgg16 --imagenet vgg16.pth --dataset sbd:/data/benchmark_RELEASE \\
        --val-dataset voc:/data/VOCdevkit:/data/seg11valid.txt --dataset-option year=2011 --out runs/32s
    fcn-train --arch fcn16s_vgg16 --init-from runs/32s/best.pt ... --out runs/16s
    fcn-train --resume runs/32s/last.pt
    fcn-train --nproc 4 ...    # = torchrun --standalone --nproc_per_node 4 -m training.cli ...
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.cli.common import add_device_option, add_seed_option, run_main
from fcn_deploy.errors import FCNError
from .distributed import ReportedByRankZero, World, launch, world_from_env
from .recipes import RECIPES, Recipe, default_recipe, get_recipe, recipe_fields
from .report import format_pct

_HELP = {
    "lr": "base learning rate (biases get lr x bias-lr-mult)",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay (weights only; biases get none)",
    "normalize_loss": "average the loss over labelled pixels (else: sum per image)",
    "max_iters": "optimizer steps to train for",
    "batch_size": "images per forward pass (>1: padded to the largest; 1: native size)",
    "accumulate": "forward passes whose gradients are accumulated per step",
    "bias_lr_mult": "learning-rate multiplier of the biases",
    "eval_every": "evaluate, log and write last.pt every this many steps",
    "mirror": "randomly mirror training images left-right",
    "clip_grad_norm": "clip the gradient's L2 norm to this (0: off, as the reference)",
}


def _option_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _dataset_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"dataset option {text!r} is not KEY=VALUE "
                                         "(e.g. year=2011, min_size=48)")
    return key.strip(), _option_value(value.strip())


def _stream_sources(items: Sequence[str]) -> dict[str, Path]:
    """``["color=a.pt", "hha=b.pt"]`` -> {stream: checkpoint}; a malformed or repeated stream
    is an FCNError."""
    out: dict[str, Path] = {}
    for item in items:
        stream, sep, path = item.partition("=")
        if not sep or not stream or not path:
            raise FCNError(f"--init-stream {item!r}: expected STREAM=CHECKPOINT, e.g. "
                           "color=runs/rgb/best.pt")
        if stream in out:
            raise FCNError(f"--init-stream {stream} is given twice")
        out[stream] = Path(path)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-train", description="Train an FCN with the reference recipes (see --list-recipes).")
    what = p.add_argument_group("model and data")
    what.add_argument("--arch", help="architecture (fcn_deploy.models.list_models()); "
                      "default with --resume: the checkpoint's")
    what.add_argument("--dataset", help="training set spec: voc:<VOCdevkit>[:<set>], "
                      "sbd:<root>[:train], folder:<images>,<masks>, synthetic[:<n>], "
                      "siftflow:<root>[:trainval], nyud:<root>[:train], "
                      "synthetic-twohead[:<n>], synthetic-rgbd[:<n>]")
    what.add_argument("--val-dataset", help="validation set spec (default: synthetic data is "
                      "validated on 50 other synthetic images; other data is not evaluated)")
    what.add_argument("--dataset-option", action="append", type=_dataset_option, default=[],
                      metavar="KEY=VALUE", help="keyword option for both datasets "
                      "(e.g. year=2011, min_size=48); repeatable")
    what.add_argument("--num-classes", type=int, help="check that the data has this many classes "
                      "(default: the dataset's)")
    what.add_argument("--width", type=float, default=None,
                      help="channel multiplier (default: 1.0 = the reference net)")
    what.add_argument("--learn-upsampling", action="store_true", default=None,
                      help="learn the intermediate upsampling layers (the paper) instead of "
                      "keeping them bilinear (the reference)")
    start = p.add_argument_group("starting point (one of)")
    start.add_argument("--imagenet", type=Path, help="ImageNet classifier weights (e.g. "
                       "torchvision vgg16.pth) whose fc layers become convolutions")
    start.add_argument("--init-from", type=Path, help="a trained coarser FCN checkpoint "
                       "(FCN-32s -> 16s -> 8s); new score layers start at zero")
    start.add_argument("--init-stream", action="append", default=[], metavar="STREAM=CHECKPOINT",
                       help="a late-fusion net's stream from a trained single-stream net, e.g. "
                       "--init-stream color=runs/rgb/best.pt --init-stream hha=runs/hha/best.pt "
                       "(the reference's RGB-HHA recipe); repeat per stream")
    start.add_argument("--resume", nargs="?", const="", default=None, metavar="LAST_PT",
                       help="continue a run from its last.pt (default: <out>/last.pt); every "
                       "option that changes the result (data, recipe, seed, width, --val-limit, "
                       "--device, --amp, --threads) defaults to the run's; a changed one is "
                       "reported")

    rec = p.add_argument_group("recipe (defaults: --recipe's values; see --list-recipes)")
    rec.add_argument("--recipe", help="named recipe (default: the arch's reference solver; "
                     "synthetic-demo on synthetic data)")
    rec.add_argument("--list-recipes", action="store_true", help="print the recipes and exit")
    for name, kind in recipe_fields().items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            rec.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                             help=_HELP[name])
        else:
            rec.add_argument(flag, dest=name, type=kind, default=None, help=_HELP[name])

    run = p.add_argument_group("run")
    run.add_argument("--out", type=Path, help="output folder (created): best.pt, last.pt, "
                     "log.jsonl, curves.png, report.json/.md; default with --resume: its folder")
    run.add_argument("--overwrite", action="store_true",
                     help="start over in an --out that already holds a run")
    add_seed_option(run)
    add_device_option(run)
    run.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                     help="mixed precision (CUDA only)")
    run.add_argument("--workers", type=int, default=0, help="data loading processes (default: 0, load in the main process)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    run.add_argument("--val-limit", type=int, default=None,
                     help="evaluate on the first N validation images only (0: all, the default)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--nproc", type=int, default=None, metavar="N",
                     help="train with N processes on this machine (one per GPU; gloo on the "
                     "CPU): launches `torchrun --standalone --nproc_per_node N -m training.cli` "
                     "with the other options; each step then takes N times the images (see "
                     "docs/training.md); several machines: run torchrun on each. Default with "
                     "--resume: as many as the stopped run had")
    return p


def format_recipes() -> str:
    head = f"{'recipe':<16} {'lr':>7} {'mom.':>5} {'decay':>7} {'loss':>6} {'img/it':>7} " \
           f"{'iters':>7}  description"
    rows = [head]
    for r in RECIPES.values():
        img = f"{r.batch_size}x{r.accumulate}"
        rows.append(f"{r.name:<16} {r.lr:>7.0e} {r.momentum:>5g} {r.weight_decay:>7g} "
                    f"{'mean' if r.normalize_loss else 'sum':>6} {img:>7} {r.max_iters:>7}  "
                    f"{r.description}")
    return "\n".join(rows)


def config_from_args(args: argparse.Namespace, *, world=None):
    """Turn parsed options into a TrainConfig, filling a resumed run's settings from its checkpoint."""
    # lazy: the trainer imports torch; --help and --list-recipes do not need it
    from .trainer import TrainConfig, resume_settings

    resume = None
    saved: dict[str, Any] = {}
    if args.resume is not None:
        if args.resume:
            resume = Path(args.resume)
        elif args.out is not None:
            resume = args.out / "last.pt"
        else:
            raise FCNError("--resume without a path needs --out (it resumes <out>/last.pt)")
        saved = resume_settings(resume)
    arch = args.arch or saved.get("arch")
    dataset = args.dataset or saved.get("dataset")
    if not arch:
        raise FCNError("--arch is required (e.g. --arch fcn8s_vgg16)")
    if not dataset:
        raise FCNError("--dataset is required (e.g. --dataset voc:/data/VOCdevkit or synthetic)")
    if args.recipe:
        base = get_recipe(args.recipe)
    elif "recipe" in saved:
        base = Recipe.from_dict(saved["recipe"])
    else:
        base = default_recipe(arch, synthetic=dataset.partition(":")[0].lower().startswith(
            "synthetic"))
    recipe = base.replace(**{name: getattr(args, name) for name in recipe_fields()})
    options = dict(saved.get("dataset_options") or {})
    options.update(dict(args.dataset_option))
    out = args.out if args.out is not None else (resume.parent if resume is not None else None)
    if out is None:
        raise FCNError("--out is required (the folder for checkpoints, log and report)")

    def pick(value, key, default):
        return value if value is not None else saved.get(key, default)

    val_limit = pick(args.val_limit, "val_limit", None)
    if val_limit is not None and val_limit < 0:
        raise FCNError(f"--val-limit must be >= 0 (0: every validation image), got {val_limit}")
    return TrainConfig(
        arch=arch, dataset=dataset, out=out, recipe=recipe,
        val_dataset=args.val_dataset or saved.get("val_dataset"), dataset_options=options,
        width=pick(args.width, "width", 1.0),
        learn_upsampling=pick(args.learn_upsampling, "learn_upsampling", False),
        num_classes=args.num_classes, init_from=args.init_from, imagenet=args.imagenet,
        init_streams=_stream_sources(args.init_stream),
        resume=resume, overwrite=args.overwrite, seed=pick(args.seed, "seed", 0),
        workers=args.workers, device=pick(args.device, "device", None),
        amp=pick(args.amp, "amp", False), threads=pick(args.threads, "threads", None),
        val_limit=val_limit or None, progress=not args.no_progress, world=world or World())


def processes_to_launch(nproc: int | None, *, resume: Path | None) -> int:
    """How many processes ``fcn-train`` (not under torchrun) starts: ``--nproc``, else as many as
    the resumed run had (its world size is stored in last.pt), else 1 (train in this process)."""
    if nproc is not None:
        if nproc < 1:
            raise FCNError(f"--nproc must be >= 1, got {nproc}")
        return nproc
    if resume is not None:
        # lazy: the trainer imports torch (see config_from_args)
        from .trainer import resume_settings

        return int(resume_settings(resume).get("world_size", 1))
    return 1



def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_recipes:
        print(format_recipes())
        return 0
    world = world_from_env()
    under_torchrun = "LOCAL_WORLD_SIZE" in os.environ
    if under_torchrun and args.nproc is not None \
            and str(args.nproc) != os.environ["LOCAL_WORLD_SIZE"]:
        raise FCNError(f"--nproc {args.nproc} but torchrun started "
                       f"{os.environ['LOCAL_WORLD_SIZE']} processes on this machine; under "
                       "torchrun leave --nproc out")
    config = config_from_args(args, world=world)  # option errors: here, before starting anything
    if not under_torchrun:
        nproc = processes_to_launch(args.nproc, resume=config.resume)
        if nproc > 1:  # the launched processes see torchrun's variables and train
            return launch(list(sys.argv[1:] if argv is None else argv), nproc=nproc)
    # lazy: the trainer imports torch (see config_from_args)
    from .trainer import train

    r = config.recipe
    if world.main:
        processes = f"{world.world_size} processes x " if world.distributed else ""
        print(f"training {config.arch} (width {config.width:g}) on {config.dataset} with recipe "
              f"{r.name}: lr {r.lr:g}, momentum {r.momentum:g}, {r.max_iters} iterations of "
              f"{processes}{r.batch_size}x{r.accumulate} images -> {config.out}", file=sys.stderr)
    try:
        result = train(config)
    except ReportedByRankZero:
        return 2
    except KeyboardInterrupt:
        if world.main:
            raise
        return 130  # rank 0 says it
    if not world.main:
        return 0
    if result.final is not None:
        f = result.final
        print(f"final (iteration {f['iteration']}): pixel acc {format_pct(f['pixel_accuracy'])} %, "
              f"mean acc {format_pct(f['mean_accuracy'])} %, mean IU {format_pct(f['mean_iu'])} %, "
              f"fw IU {format_pct(f['fw_iu'])} %")
    if result.best is not None:
        print(f"best mean IU {format_pct(result.best['mean_iu'])} % at iteration "
              f"{result.best['iteration']}: {result.best_checkpoint}")
    print(f"last checkpoint: {result.last_checkpoint}; report: {result.report_md}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
