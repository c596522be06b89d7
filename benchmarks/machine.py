"""What the machine a benchmark ran on contributes to its figures."""

from __future__ import annotations

import os

KERNEL_CAPS = ("ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE")
"""Settings that cap the instruction set of oneDNN's (torch's convolutions) and OpenBLAS's
(numpy's matrix products) kernels."""


def cpu_kernels() -> str:
    """The CPU kernels a run used: torch's (``AVX512``, ``AVX2``, ...) and any caps on oneDNN's
    and OpenBLAS's. They round differently in the last bit, so trained weights reproduce bit
    for bit only under the same ones (docs/track.md, Files and reproducibility)."""
    import torch

    caps = [f"{name}={os.environ[name]}" for name in KERNEL_CAPS if os.environ.get(name)]
    return " ".join([str(torch.backends.cpu.get_cpu_capability()), *caps])
