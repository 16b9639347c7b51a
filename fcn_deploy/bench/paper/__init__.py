"""The paper's timing reproduction: Table 1, section 3.1, backends, export optimizations,
latency against input size, and the speed targets (``fcn-bench --paper``).

Requires PyTorch (the models are built here); imported only when the paper run is asked for.
"""
from fcn_deploy.bench.paper.config import SECTIONS, PaperConfig
from fcn_deploy.bench.paper.suite import PaperReport, run_paper

__all__ = ["SECTIONS", "PaperConfig", "PaperReport", "run_paper"]
