"""Drawing the rollout plan and running it: every rolled-out sample is denoised, without gradients, from
sigma_src = sigma + k / num_train_timesteps down to its training sigma in k solver steps.

Samples start on the analytic path at sigma_src with the step's own noise. All samples at the same stage
of their paths share one batched model call, so a batch costs at most ``max k * evaluations per step``
forwards. Fixed conditions (the clean image-to-video frame) are clean in every model input (the family
sees to it) and in the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vtrain_rollout.samplers import make_path

if TYPE_CHECKING:
    import torch

Predict = Callable[[dict[str, Any], "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
SIGMA_SOURCE_MAX = 0.999  # sigma 1 has no signal; multistep solvers take log(1 - sigma)


def draw_steps(batch_size: int, probability: float, max_step_offset: int, device: Any,
               strategy: str = "uniform") -> torch.Tensor:
    """(B,) rollout lengths: a sample is chosen with ``probability``, then k is drawn in 0..max (0: none):
    uniformly, or with ``strategy`` biased_early (round(u^2 max)) or biased_late (round((1 - u^2) max)).

    Both draws come from the torch global RNG (on ``device``), which checkpoints save and restore."""
    import torch

    chosen = torch.rand(batch_size, device=device) < probability
    if strategy == "uniform":
        steps = torch.randint(0, max_step_offset + 1, (batch_size,), device=device)
    else:
        u = torch.rand(batch_size, device=device) ** 2
        steps = torch.round((u if strategy == "biased_early" else 1.0 - u) * max_step_offset).long()
    return torch.where(chosen, steps, torch.zeros_like(steps))


def source_sigmas(sigmas: torch.Tensor, steps: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """sigma_src = min(sigma + k / num_train_timesteps, 0.999): k training timesteps further up the schedule."""
    return (sigmas + steps.to(sigmas.dtype) / num_train_timesteps).clamp(max=SIGMA_SOURCE_MAX)


def select_rows(batch: dict[str, Any], rows: list[int], size: int) -> dict[str, Any]:
    """The batch restricted to ``rows``: per-sample tensors and lists are indexed, everything else kept."""
    import torch

    index: torch.Tensor | None = None
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
            if index is None or index.device != value.device:
                index = torch.tensor(rows, device=value.device)
            out[key] = value.index_select(0, index)
        elif isinstance(value, (list, tuple)) and len(value) == size:
            out[key] = [value[row] for row in rows]
        else:
            out[key] = value
    return out


@dataclass
class RolloutResult:
    """``noisy_latents`` (B, ...) float32: rolled out where ``rolled``, analytic elsewhere."""

    noisy_latents: torch.Tensor
    rolled: torch.Tensor  # (B,) bool: the samples whose input came from a rollout
    steps: torch.Tensor  # (B,) the k of each sample (0 where not rolled)
    source_sigmas: torch.Tensor  # (B,)


def roll_out(predict: Predict, batch: dict[str, Any], x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor,
             steps: torch.Tensor, sampler: str, num_train_timesteps: int,
             condition_mask: torch.Tensor | None, order: int = 2) -> RolloutResult:
    """Run the plan ``steps`` with ``sampler``; ``predict(sub_batch, x, sigmas)`` is the family's velocity."""
    import torch

    from vtrain.flow_matching import noisy_latents

    size = x0.shape[0]
    result = noisy_latents(x0, noise, sigmas)
    source = source_sigmas(sigmas, steps, num_train_timesteps)
    steps = torch.where(source > sigmas, steps, torch.zeros_like(steps))  # sigma already at the cap: nothing to do
    rows = [int(row) for row in torch.nonzero(steps > 0).flatten().tolist()]
    paths, pending = {}, {}
    with torch.no_grad():
        for row in rows:
            count = int(steps[row])
            grid = torch.linspace(float(source[row]), float(sigmas[row]), count + 1).tolist()
            grid[0], grid[-1] = float(source[row]), float(sigmas[row])
            start = noisy_latents(x0[row:row + 1], noise[row:row + 1], source[row:row + 1])
            paths[row] = make_path(sampler, start, grid, num_train_timesteps, order)
            pending[row] = next(paths[row])
        while pending:
            order = sorted(pending)
            inputs = torch.cat([pending[row][0] for row in order])
            at = torch.tensor([pending[row][1] for row in order], device=x0.device, dtype=torch.float32)
            velocity = predict(select_rows(batch, order, size), inputs, at).float()
            advanced = {}
            for position, row in enumerate(order):
                try:
                    advanced[row] = paths[row].send(velocity[position:position + 1])
                except StopIteration as done:
                    result[row] = done.value[0].to(result.dtype)
            pending = advanced
        if condition_mask is not None and rows:
            result = result * (1 - condition_mask) + x0 * condition_mask
    return RolloutResult(noisy_latents=result, rolled=steps > 0, steps=steps, source_sigmas=source)
