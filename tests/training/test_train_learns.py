"""A narrow FCN-8s really learns the synthetic shapes on a CPU (about 40 s on one core).

Why the thresholds mean something: on these images about 88 % of the pixels are background,
so predicting background everywhere scores that fraction for class 0 and 0 for the six shape
classes: a mean IU of about 0.13 (computed below, not assumed). A net with random weights
scores lower still (it scatters random classes). A model that is broken (no gradient reaching
the backbone, labels misaligned by the crop, the loss ignoring the wrong pixels) stays at the
background-only level. We ask for a mean IU of at least 0.30 and at least twice the
background-only score, *and* two shape classes above 0.30 IU each, which only a net that
tells shapes apart reaches. Measured after 400 steps with seeds 0, 1, 2: mean IU 0.42, 0.41,
0.41, each with three shape classes above 0.30 (after 300 steps seed 2 stayed at 0.30 with one,
hence 400: float differences on another CPU act like another seed).
"""
import numpy as np
import pytest
import torch

from fcn_deploy.datasets import create_dataset
from fcn_deploy.metrics import ConfusionMatrix
from fcn_deploy.models import create_model
from training.data import ResumableBatchSampler, TorchSegmentation, make_loader
from training.recipes import get_recipe
from training.trainer import SYNTHETIC_VAL_SEED, TrainConfig, evaluate, train

DATA = {"min_size": 48, "max_size": 64}
VAL_IMAGES = 30


def _val_set():
    # The trainer's default validation set for a synthetic run: other seed, never trained on.
    return create_dataset("synthetic:50", seed=SYNTHETIC_VAL_SEED, **DATA)


def _background_only_miu(val):
    matrix = ConfusionMatrix(val.num_classes)
    for i in range(VAL_IMAGES):
        label = val[i].label
        matrix.update(label, np.zeros_like(label))
    return matrix.compute().mean_iu


def _random_weights_miu(val):
    torch.manual_seed(123)
    model = create_model("fcn8s_vgg16", num_classes=val.num_classes, width=1 / 16)
    for name in model.score_layers:  # zero by design; randomise them like every other layer
        torch.nn.init.kaiming_normal_(model.get_submodule(name).weight)
    loader = make_loader(TorchSegmentation(val),
                         ResumableBatchSampler(VAL_IMAGES, batch_size=1, shuffle=False))
    return evaluate(model, loader, num_classes=val.num_classes, ignore_label=255,
                    device=torch.device("cpu")).mean_iu


@pytest.mark.slow
def test_fcn8s_learns_the_synthetic_shapes(tmp_path):
    val = _val_set()
    background = _background_only_miu(val)
    random_weights = _random_weights_miu(val)
    assert 0.10 < background < 0.16 and random_weights < background

    recipe = get_recipe("synthetic-demo").replace(max_iters=400, eval_every=400)
    result = train(TrainConfig(arch="fcn8s_vgg16", dataset="synthetic:100", out=tmp_path,
                               recipe=recipe, dataset_options=dict(DATA), width=1 / 16,
                               val_limit=VAL_IMAGES, threads=1, progress=False))
    final = result.final
    shapes_learned = sum(iu is not None and iu > 0.30 for iu in final["per_class_iu"][1:])
    print(f"mean IU {final['mean_iu']:.3f} (background only {background:.3f}, random weights "
          f"{random_weights:.3f}); per class {final['per_class_iu']}")
    assert final["mean_iu"] >= max(0.30, 2 * background)
    assert shapes_learned >= 2
    assert np.mean(result.losses[-50:]) < 0.5 * np.mean(result.losses[:50])
