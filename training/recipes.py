"""Named training recipes: the reference solvers, the paper's section 4.3 and a CPU demo.

A recipe is everything that decides *how* a model is optimized (not where the data lies or
which device runs it). Every field can be overridden (``Recipe.replace`` / ``fcn-train --lr ...``).
A recipe is added with one call, ``register_recipe(Recipe(...), default_for=(arch, ...))``, in
this module or any module imported before ``fcn-train`` parses its options.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from fcn_deploy.errors import FCNError


@dataclass(frozen=True)
class Recipe:
    """How to optimize: SGD hyper-parameters, loss normalization, batching, schedule.

    One iteration is one optimizer step over ``accumulate`` batches of ``batch_size`` images
    (``batch_size`` 1 keeps every image at its native size, as the reference does; larger batches
    pad images with zeros after mean subtraction and labels with the ignore label).
    ``clip_grad_norm`` > 0 clips the gradient's global L2 norm (not in the reference; it lets a
    net train from scratch at a usable rate on raw, unscaled pixels).
    """

    name: str
    lr: float
    momentum: float
    weight_decay: float
    normalize_loss: bool
    max_iters: int
    batch_size: int = 1
    accumulate: int = 1
    bias_lr_mult: float = 2.0
    eval_every: int = 4000
    mirror: bool = False
    clip_grad_norm: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.bias_lr_mult >= 0, "bias_lr_mult must be >= 0"),
            (self.max_iters >= 1, "max_iters must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.accumulate >= 1, "accumulate must be >= 1"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.clip_grad_norm >= 0, "clip_grad_norm must be >= 0 (0 = off)"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise FCNError(f"recipe {self.name!r}: " + "; ".join(bad))

    @property
    def images_per_iter(self) -> int:
        return self.batch_size * self.accumulate

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with some fields changed (``None`` values are ignored); unknown names are an error."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - set(recipe_fields()) - {"name", "description"})
        if unknown:
            raise FCNError(f"unknown recipe field(s) {', '.join(unknown)}; "
                           f"valid: {', '.join(recipe_fields())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def recipe_fields() -> dict[str, type]:
    """The overridable fields and their types (what ``fcn-train`` turns into options)."""
    types = {"float": float, "int": int, "bool": bool}
    return {f.name: types[f.type] for f in dataclasses.fields(Recipe)
            if f.name not in ("name", "description")}


_REF = "reference solver (fcn.berkeleyvision.org)"
_PAPER = "paper section 4.3"

#: The registry: every recipe ``fcn-train --recipe`` accepts, by name, in registration order.
RECIPES: dict[str, Recipe] = {}
#: The recipe each architecture trains with by default (on real data): arch -> recipe name.
DEFAULT_RECIPES: dict[str, str] = {}


def register_recipe(recipe: Recipe, *, default_for: Sequence[str] = ()) -> Recipe:
    """The one way to add a recipe: ``get_recipe(recipe.name)`` (``fcn-train --recipe``) finds
    it, and each architecture in ``default_for`` trains with it unless told otherwise.

    Registering the same recipe again only adds defaults; another recipe under a taken name, or
    a second default for an architecture, is an error (a bug in the registering module)."""
    if recipe.name in RECIPES and RECIPES[recipe.name] != recipe:
        raise ValueError(f"recipe name {recipe.name!r} is already registered")
    taken = [a for a in default_for if DEFAULT_RECIPES.get(a, recipe.name) != recipe.name]
    if taken:
        raise ValueError(f"architecture(s) {', '.join(taken)} already have a default recipe "
                         f"({', '.join(DEFAULT_RECIPES[a] for a in taken)})")
    RECIPES[recipe.name] = recipe
    for arch in default_for:
        DEFAULT_RECIPES[arch] = recipe.name
    return recipe


# Reference VGG16 solvers: summed loss, batch 1, huge momentum and tiny fixed rates. The paper's
# other nets (SIFT Flow, NYUDv2) default to the VOC recipe of the same output stride.
register_recipe(
    Recipe("fcn32s", lr=1e-10, momentum=0.99, weight_decay=5e-4, normalize_loss=False,
           max_iters=100_000, description=f"{_REF}: FCN-32s from ImageNet VGG16"),
    default_for=("fcn32s_vgg16", "siftflow_fcn32s", "nyud_fcn32s_color", "nyud_fcn32s_hha",
                 "nyud_fcn32s_color_d", "nyud_fcn32s_color_hha"))
register_recipe(
    Recipe("fcn16s", lr=1e-12, momentum=0.99, weight_decay=5e-4, normalize_loss=False,
           max_iters=100_000, description=f"{_REF}: FCN-16s from a trained FCN-32s"),
    default_for=("fcn16s_vgg16", "siftflow_fcn16s", "nyud_fcn16s_color_hha"))
register_recipe(
    Recipe("fcn8s", lr=1e-14, momentum=0.99, weight_decay=5e-4, normalize_loss=False,
           max_iters=100_000, description=f"{_REF}: FCN-8s from a trained FCN-16s"),
    default_for=("fcn8s_vgg16", "siftflow_fcn8s"))
register_recipe(
    Recipe("fcn8s-atonce", lr=1e-10, momentum=0.99, weight_decay=5e-4, normalize_loss=False,
           max_iters=300_000, description=f"{_REF}: FCN-8s at once from ImageNet VGG16"),
    default_for=("fcn8s_atonce_vgg16",))
register_recipe(
    Recipe("fcn-alexnet", lr=1e-4, momentum=0.9, weight_decay=5e-4, normalize_loss=True,
           accumulate=20, max_iters=100_000,
           description=f"{_REF}: FCN-AlexNet, normalized loss, 20 images per step"),
    default_for=("fcn_alexnet",))
# The paper: minibatch of 20 images (accumulated, images keep their sizes), momentum 0.9.
# The paper gives no iteration count; 100k steps is our choice.
register_recipe(Recipe("paper-alexnet", lr=1e-3, momentum=0.9, weight_decay=5e-4,
                       normalize_loss=True, accumulate=20, max_iters=100_000,
                       description=f"{_PAPER}: FCN-AlexNet"))
register_recipe(Recipe("paper-vgg16", lr=1e-4, momentum=0.9, weight_decay=5e-4,
                       normalize_loss=True, accumulate=20, max_iters=100_000,
                       description=f"{_PAPER}: FCN-VGG16"))
register_recipe(
    Recipe("paper-googlenet", lr=5e-5, momentum=0.9, weight_decay=5e-4, normalize_loss=True,
           accumulate=20, max_iters=100_000, description=f"{_PAPER}: FCN-GoogLeNet"),
    default_for=("fcn_googlenet",))
# From scratch on raw pixels: clipping lets a narrow net train at a usable rate (measured on
# FCN-8s at 1/16 width: 41 % mean IU on held-out synthetic images after 1000 steps).
register_recipe(Recipe("synthetic-demo", lr=0.01, momentum=0.9, weight_decay=5e-4,
                       normalize_loss=True, batch_size=4, max_iters=1000, eval_every=100,
                       mirror=True, clip_grad_norm=2.0,
                       description="CPU demo: narrow FCN from scratch on the synthetic shapes"))

#: Recipe used by default on the synthetic data set, whatever the architecture.
SYNTHETIC_RECIPE = "synthetic-demo"


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise FCNError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}") from None


def default_recipe(arch: str, *, synthetic: bool = False) -> Recipe:
    """The recipe for ``arch``: its reference solver, or the demo recipe on synthetic data."""
    if synthetic:
        return RECIPES[SYNTHETIC_RECIPE]
    if arch not in DEFAULT_RECIPES:
        raise FCNError(f"no default recipe for architecture {arch!r}; pick one with --recipe "
                       f"({', '.join(RECIPES)})")
    return RECIPES[DEFAULT_RECIPES[arch]]
