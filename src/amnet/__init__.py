"""amnet: fashion search with attribute manipulation (Zhao et al., CVPR 2017) as an MLOps pipeline."""

__version__ = "0.1.0"
