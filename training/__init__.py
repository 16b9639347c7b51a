"""PyTorch training for the FCN models of :mod:`fcn_deploy`.

The reference recipes (loss, SGD with 2x bias learning rate, fixed learning rates, staged
training), a resumable data pipeline and an iteration-based trainer. This package imports
``fcn_deploy``; ``fcn_deploy`` never imports it. torch is imported by the submodules that need it.
"""
