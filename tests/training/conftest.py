"""Shared tiny training setup: a narrow net on a handful of small synthetic images."""
import pytest
import torch

from training.recipes import get_recipe
from training.trainer import TrainConfig

#: Small synthetic images and few classes: every train() call in these tests takes seconds.
TINY_DATA = {"min_size": 32, "max_size": 48, "num_classes": 3}


@pytest.fixture(autouse=True)
def _one_thread():
    # The CI machine has 2 shared cores: one thread is faster than two when they are busy.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny_config(out, **changes):
    """FCN-8s at width 1/16, 5 images, 2x2 images per step, 6 steps, evaluation every 2."""
    fields = {"max_iters": 6, "eval_every": 2, "batch_size": 2, "accumulate": 2,
              **changes.pop("recipe", {})}
    recipe = get_recipe("synthetic-demo").replace(**fields)
    base = dict(arch="fcn8s_vgg16", dataset="synthetic:5", out=out, recipe=recipe,
                dataset_options=dict(TINY_DATA), width=1 / 16, val_limit=3, progress=False,
                threads=1)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(out, **TrainConfig changes, recipe={...})`` -> TrainConfig."""
    return _tiny_config
