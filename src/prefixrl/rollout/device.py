"""Where a stage's model runs: `--device auto|cpu|cuda[:N]`.

The rule for every tensor in the loop: the model's parameters decide. The sampler, the trained-token
mask (`mask.make_batch(..., device=)`), the advantages and the off-policy weights are built where the
model is; what is bookkept (token lists, rewards, the FLOPs ledger) stays on the host. The random numbers
of sampling are drawn on the CPU from the row's seed (`engine.row_uniforms`) and moved, so a seed means
the same uniforms on every device.
"""

from __future__ import annotations

import torch

from prefixrl.io.errors import BadInput

CHOICES = "auto, cpu, cuda or cuda:N"


def resolve(spec: str) -> torch.device:
    """auto: the first CUDA GPU if torch sees one, else the CPU. An explicit cuda that is not there is one
    line (exit 2), never a silent fall-back to the CPU."""
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise BadInput(f"unknown device {spec!r}; choose {CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise BadInput(f"unknown device {spec!r}; choose {CHOICES}")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise BadInput(f"--device {spec}: no CUDA GPU is visible to this torch ({torch.__version__}, {build}); "
                       "use --device cpu, or auto")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise BadInput(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                       f"numbered from 0")
    return device


def of(model) -> torch.device:
    """The device of a model's parameters (where its batches must be)."""
    return next(model.parameters()).device
