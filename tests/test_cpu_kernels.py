"""Portable CPU kernels (amnet.cpu_kernels): importing amnet pins PyTorch, oneDNN and MKL to AVX2 unless
AMNET_CPU_KERNELS=native, and never overrides a value the environment already has."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from amnet import cpu_kernels


def test_pin_sets_the_portable_choice_and_keeps_given_values():
    env = {"MKL_CBWR": "COMPATIBLE"}
    assert cpu_kernels.pin(env) == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                    "MKL_CBWR": "COMPATIBLE"}
    native = {"AMNET_CPU_KERNELS": "native"}
    assert cpu_kernels.pin(native) == {} and set(native) == {"AMNET_CPU_KERNELS"}
    with pytest.raises(ValueError, match="AMNET_CPU_KERNELS"):
        cpu_kernels.pin({"AMNET_CPU_KERNELS": "fast"})


def run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in (*cpu_kernels.PORTABLE, "AMNET_CPU_KERNELS")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


def test_importing_amnet_pins_torch_to_avx2_before_it_picks_kernels():
    code = "import amnet, torch; print(torch.backends.cpu.get_cpu_capability())"
    native = run("import torch; print(torch.backends.cpu.get_cpu_capability())")
    if native not in ("AVX2", "AVX512"):
        pytest.skip(f"this CPU has no AVX2 kernels to pin ({native})")  # e.g. an ARM runner
    assert run(code) == "AVX2"
    assert run(code, AMNET_CPU_KERNELS="native") == native
