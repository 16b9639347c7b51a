"""Recipes reproduce the reference solvers and the paper, and every field can be overridden."""
import pytest

from fcn_deploy.errors import FCNError
from training import recipes
from training.recipes import (DEFAULT_RECIPES, RECIPES, Recipe, default_recipe, get_recipe,
                              recipe_fields, register_recipe)


@pytest.mark.parametrize("name,lr,momentum,normalize,accumulate,iters", [
    ("fcn32s", 1e-10, 0.99, False, 1, 100_000),
    ("fcn16s", 1e-12, 0.99, False, 1, 100_000),
    ("fcn8s", 1e-14, 0.99, False, 1, 100_000),
    ("fcn8s-atonce", 1e-10, 0.99, False, 1, 300_000),
    ("fcn-alexnet", 1e-4, 0.9, True, 20, 100_000),
])
def test_reference_solvers(name, lr, momentum, normalize, accumulate, iters):
    r = get_recipe(name)
    assert (r.lr, r.momentum, r.normalize_loss, r.accumulate, r.max_iters) == \
        (lr, momentum, normalize, accumulate, iters)
    assert r.batch_size == 1 and r.weight_decay == 5e-4 and r.bias_lr_mult == 2.0


@pytest.mark.parametrize("name,lr", [("paper-alexnet", 1e-3), ("paper-vgg16", 1e-4),
                                     ("paper-googlenet", 5e-5)])
def test_paper_recipes_minibatch_20(name, lr):
    r = get_recipe(name)
    assert r.lr == lr and r.momentum == 0.9 and r.images_per_iter == 20


def test_default_recipe_per_arch():
    assert default_recipe("fcn16s_vgg16").name == "fcn16s"
    assert default_recipe("fcn_alexnet").name == "fcn-alexnet"
    assert default_recipe("fcn8s_vgg16", synthetic=True).name == "synthetic-demo"
    assert set(DEFAULT_RECIPES.values()) <= set(RECIPES)
    with pytest.raises(FCNError, match="no default recipe for architecture 'resnet'"):
        default_recipe("resnet")


def test_overrides_and_validation():
    r = get_recipe("fcn32s").replace(lr=0.5, max_iters=7, mirror=True, momentum=None)
    assert (r.lr, r.max_iters, r.mirror, r.momentum) == (0.5, 7, True, 0.99)
    assert get_recipe("fcn32s").lr == 1e-10  # the registry's recipe is untouched
    with pytest.raises(FCNError, match="unknown recipe field.*bogus"):
        r.replace(bogus=1)
    with pytest.raises(FCNError, match="momentum must be in"):
        r.replace(momentum=1.5)
    with pytest.raises(FCNError, match="unknown recipe 'nope'; valid: fcn32s"):
        get_recipe("nope")
    assert recipe_fields()["accumulate"] is int and "name" not in recipe_fields()
    assert type(r).from_dict(r.to_dict()) == r


def test_a_recipe_is_added_with_one_registration(monkeypatch):
    monkeypatch.setattr(recipes, "RECIPES", dict(RECIPES))
    monkeypatch.setattr(recipes, "DEFAULT_RECIPES", dict(DEFAULT_RECIPES))
    mine = Recipe("my-recipe", lr=0.5, momentum=0.9, weight_decay=0.0, normalize_loss=True,
                  max_iters=10)
    assert register_recipe(mine, default_for=("my_arch",)) is mine
    assert get_recipe("my-recipe") is mine and default_recipe("my_arch") is mine
    assert list(recipes.RECIPES)[-1] == "my-recipe"
    register_recipe(mine, default_for=("my_other_arch",))  # the same recipe again: more defaults
    assert default_recipe("my_other_arch") is mine
    with pytest.raises(ValueError, match="recipe name 'my-recipe' is already registered"):
        register_recipe(mine.replace(lr=0.1))
    with pytest.raises(ValueError, match=r"fcn_alexnet already have a default recipe "
                                         r"\(fcn-alexnet\)"):
        register_recipe(mine, default_for=("fcn_alexnet",))
    with pytest.raises(FCNError, match="unknown recipe 'nope'; valid: .*synthetic-demo, my-recipe$"):
        get_recipe("nope")
