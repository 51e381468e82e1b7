"""amnet: fashion search with attribute manipulation (Zhao et al., CVPR 2017) as an MLOps pipeline."""

from amnet import cpu_kernels

__version__ = "0.1.0"

cpu_kernels.pin()  # before torch picks CPU kernels: one seed, one model on any AVX2 machine
