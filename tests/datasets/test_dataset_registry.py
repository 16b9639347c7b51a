"""register_dataset: a new dataset kind is one class and one registered spec parser."""
import pytest

from fcn_deploy import datasets
from fcn_deploy.datasets import SyntheticShapes, create_dataset, register_dataset, spec_forms
from fcn_deploy.errors import FCNError


class Tiles(SyntheticShapes):
    """A stand-in kind: synthetic shapes, sized by the spec."""


@pytest.fixture
def tiles_kind():
    @register_dataset("tiles", Tiles, "tiles:<count>  (test kind)")
    def _parse(rest, kwargs, spec):
        return (), {**kwargs, "num_images": int(rest)}

    yield
    del datasets._KINDS["tiles"]


def test_a_registered_kind_is_built_from_its_spec_with_shared_options(tiles_kind):
    ds = create_dataset("tiles:3", seed=5, year="2012")  # year (a voc option) is dropped
    assert isinstance(ds, Tiles) and len(ds) == 3
    assert spec_forms()[-1] == "tiles:<count>  (test kind)"
    with pytest.raises(FCNError, match=r"not understood; expected one of: voc:.*; tiles:<count>"):
        create_dataset("tiles")  # the form needs text after the colon
    with pytest.raises(ValueError, match="dataset scheme 'tiles' is already registered"):
        register_dataset("tiles", Tiles, "again")(lambda rest, kwargs, spec: ((), kwargs))
