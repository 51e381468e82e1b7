"""Portable CPU kernels, so a CPU run of one seed gives the same model on any x86-64 machine with AVX2.

PyTorch, oneDNN and MKL pick their kernels by the CPU they run on: on a CPU with AVX-512 a run takes
other code paths than on one without, the float rounding differs and a training run drifts to another
model (measured: two epochs of attribute-CNN pretraining, AVX-512 vs AVX2 kernels on the same machine,
differ in every layer; each repeats bit for bit). Unless ``AMNET_CPU_KERNELS=native``, importing
``amnet`` pins all three to AVX2 (each only where the environment does not set it already), before
they read their settings; stage subprocesses inherit it. GPU kernels are not affected.
"""

from __future__ import annotations

import os

PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def pin(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """Set the portable kernel choice in ``environ`` unless ``AMNET_CPU_KERNELS=native``; returns what
    is in effect (values the environment already had win)."""
    mode = environ.get("AMNET_CPU_KERNELS", "portable").strip().lower()
    if mode not in ("portable", "native"):
        raise ValueError(f"AMNET_CPU_KERNELS must be portable or native (got {mode!r})")
    if mode == "native":
        return {}
    for key, value in PORTABLE.items():
        environ.setdefault(key, value)
    return {key: environ[key] for key in PORTABLE}
