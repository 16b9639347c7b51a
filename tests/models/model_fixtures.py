"""Helpers shared by the model tests: thin widths and meta-device builds."""
import torch

from fcn_deploy.models import create_model, list_models

#: Channel multiplier for tests that run forward passes (the geometry does not depend on it).
TINY = 1 / 16
#: The single-input, single-head nets (the multi-input/multi-head ones: test_model_multi.py).
ALL_MODELS = list_models(multi=False)


def build_meta(name: str, **kwargs) -> torch.nn.Module:
    """Full-size model on the meta device: shapes and parameter counts without memory or init."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def randomize_scores(model: torch.nn.Module, *, std: float = 0.1) -> torch.nn.Module:
    """Give the (zero-initialised) score layers random weights so outputs carry information."""
    with torch.no_grad():
        for name in model.score_layers:
            layer = model.get_submodule(name)
            layer.weight.normal_(0.0, std)
            layer.bias.normal_(0.0, std)
    return model
