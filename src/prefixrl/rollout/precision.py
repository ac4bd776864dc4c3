"""Numeric precision of forward passes: "auto" is bf16 autocast on a GPU with native bf16, else float32.

bf16 is a speed choice, never a default that can silently cost 10× or change results by machine: on a
CPU without native bf16 (AVX2 only) oneDNN emulates it, and a training step measured 13× slower than
float32 (docs/performance.md). CPUs that do have it (AVX512-BF16, AMX) would compute the embedded
default in another precision than the CPUs that do not, so the same command would train differently on
two laptops. So on CPU "auto" means float32 everywhere; `--precision bf16` opts in. The optimizer state
and the loss stay float32 either way (autocast changes matmuls, not parameters).
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported by the functions that use it, so the settings that name these choices import no torch
CHOICES = ("auto", "bf16", "fp32")  # --precision


def native_bf16(device: torch.device) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # AVX512-BF16 or AMX
    return False


def resolve(precision: str, device: torch.device) -> str:
    """"auto" → "bf16" on a GPU that computes bf16 natively, else "fp32" (every CPU: see above)."""
    if precision not in CHOICES:
        raise ValueError(f"unknown precision {precision!r}; choose from: {', '.join(CHOICES)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """A zero-argument context-manager factory for the forward passes at `precision` (resolved)."""
    if resolve(precision, device) == "fp32":
        return contextlib.nullcontext
    import torch

    return functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
