"""Flow-matching maths shared by every flow-matching family (model-agnostic).

x_t = (1 - sigma) * x0 + sigma * noise; the model predicts the velocity noise - x0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """sigma' = s * sigma / (1 + (s - 1) * sigma)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def resolution_shift(num_tokens: int, base_seq_len: int, max_seq_len: int, base_shift: float, max_shift: float) -> float:
    """The resolution-dependent shift exp(mu), mu linear in the token count between the base
    and max points (the rule diffusers' flow-matching pipelines use for dynamic shifting)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    mu = base_shift + slope * (num_tokens - base_seq_len)
    return math.exp(mu)


def sample_sigmas(batch_size: int, method: str, mean: float, std: float, device: Any = None,
                  generator: Any = None) -> torch.Tensor:
    """Draw training sigmas in (0, 1): ``logit_norm`` (sigmoid of a normal) or ``uniform``."""
    import torch

    if method == "logit_norm":
        normal = torch.randn(batch_size, generator=generator, device=device) * std + mean
        return torch.sigmoid(normal)
    if method == "uniform":
        return torch.rand(batch_size, generator=generator, device=device)
    raise ValueError(f"unknown sigma sampling method {method!r}")


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Interpolate between data and noise; ``sigmas`` has one value per sample."""
    shape = (-1,) + (1,) * (x0.dim() - 1)
    s = sigmas.view(shape).to(x0.dtype)
    return (1 - s) * x0 + s * noise
