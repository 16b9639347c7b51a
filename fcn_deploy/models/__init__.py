"""FCN model zoo: registry and factory, architectures, checkpoints, surgery, analysis, and
the import of published weights (Caffe caffemodels, pytorch-fcn state_dicts).

Importing this package imports torch; ``import fcn_deploy`` does not.
"""
from fcn_deploy.models.checkpoint import (capture_rng_state, load_checkpoint, load_model,
                                          restore_rng_state, save_checkpoint)
from fcn_deploy.models.importing import ImportReport, import_weights
from fcn_deploy.models.layers import FCNBase, bilinear_kernel
from fcn_deploy.models.registry import create_model, list_models, register_model

# The built-in architectures register themselves with @register_model when imported; importing
# any fcn_deploy.models module runs this file first, so create_model always sees them. A new
# architecture: one module with @register_model("name"), imported here.
from fcn_deploy.models import alexnet, googlenet, nyud, siftflow, vgg  # noqa: E402,F401  (registration)

__all__ = [
    "FCNBase", "ImportReport", "bilinear_kernel", "capture_rng_state", "create_model",
    "import_weights", "list_models",
    "load_checkpoint", "load_model", "register_model", "restore_rng_state", "save_checkpoint",
]
