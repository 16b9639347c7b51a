"""Fixtures for the model tests."""
import pytest
import torch
from model_fixtures import ALL_MODELS, TINY, randomize_scores

from fcn_deploy.models import create_model


@pytest.fixture(scope="session")
def tiny_models():
    """One width-1/16 model per registered name, built once (eval mode, fixed seed, random
    score layers so that outputs are not all zero)."""
    torch.manual_seed(0)
    return {name: randomize_scores(create_model(name, width=TINY)).eval() for name in ALL_MODELS}


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run tiny convolutions; on a shared 2-core box extra threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
