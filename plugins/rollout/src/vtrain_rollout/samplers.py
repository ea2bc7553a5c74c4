"""The rollout solvers, as paths a driver advances: each yields ``(x, sigma)`` and is sent the velocity there.

``euler``, ``unipc`` and ``dpm`` are diffusers' flow-matching schedulers (``FlowMatchEulerDiscreteScheduler``,
``UniPCMultistepScheduler`` and ``DPMSolverMultistepScheduler`` with flow sigmas and ``flow_prediction``) stepped
over the sigma grid of the rollout; ``rk4`` (no diffusers scheduler exists) is the classical fourth-order
Runge-Kutta step of dx/dsigma = v(x, sigma), four model evaluations per step.
Velocities follow flow matching: ``v = noise - x0``, so ``x(sigma') = x(sigma) + (sigma' - sigma) v`` when exact.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# model evaluations per rollout step, for the cost estimate
EVALUATIONS_PER_STEP = {"euler": 1, "unipc": 1, "dpm": 1, "rk4": 4}

Path = Generator[tuple["torch.Tensor", float], "torch.Tensor", "torch.Tensor"]


def make_scheduler(name: str, num_train_timesteps: int, order: int = 2) -> Any:
    """A fresh diffusers scheduler for flow matching (shift 1: the grid is already where it should be);
    ``order`` is the unipc/dpm solver order.

    Copied from one built per sampler: building FlowMatchEulerDiscreteScheduler takes ~17 ms, a copy ~0.1 ms."""
    return copy.deepcopy(_prototype(name, num_train_timesteps, order))


@functools.lru_cache(maxsize=8)
def _prototype(name: str, num_train_timesteps: int, order: int = 2) -> Any:
    from diffusers import (
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=1.0)
    if name == "unipc":
        return UniPCMultistepScheduler(num_train_timesteps=num_train_timesteps, prediction_type="flow_prediction",
                                       use_flow_sigmas=True, flow_shift=1.0, solver_order=order)
    if name == "dpm":
        return DPMSolverMultistepScheduler(num_train_timesteps=num_train_timesteps, prediction_type="flow_prediction",
                                           use_flow_sigmas=True, flow_shift=1.0, solver_order=order,
                                           algorithm_type="dpmsolver++")
    raise ValueError(f"no diffusers scheduler for rollout sampler {name!r}")


def set_grid(scheduler: Any, grid: Sequence[float], num_train_timesteps: int) -> None:
    """Make ``scheduler`` step exactly over ``grid`` (sigma_src, ..., sigma): len(grid) - 1 steps.

    diffusers' ``set_timesteps`` appends a final sigma of 0 (or its own minimum); rollout ends at the training
    sigma, so the sigmas are replaced by the grid and stepping starts at index 0."""
    import torch

    scheduler.set_timesteps(num_inference_steps=len(grid) - 1)
    scheduler.sigmas = torch.tensor(list(grid), dtype=torch.float32)
    scheduler.timesteps = torch.tensor(list(grid[:-1]), dtype=torch.float32) * num_train_timesteps
    scheduler.set_begin_index(0)


def scheduler_path(scheduler: Any, x: torch.Tensor, grid: Sequence[float], num_train_timesteps: int) -> Path:
    """Step a diffusers scheduler from ``grid[0]`` to ``grid[-1]``, one model evaluation per step."""
    set_grid(scheduler, grid, num_train_timesteps)
    for index in range(len(grid) - 1):
        velocity = yield x, float(grid[index])
        x = scheduler.step(velocity, scheduler.timesteps[index], x, return_dict=False)[0]
    return x


def rk4_path(x: torch.Tensor, grid: Sequence[float]) -> Path:
    """Classical Runge-Kutta 4 over ``grid``: k1 at sigma, k2 and k3 at the midpoint, k4 at the next sigma."""
    for sigma, following in zip(grid[:-1], grid[1:]):
        h = float(following) - float(sigma)
        k1 = yield x, float(sigma)
        k2 = yield x + (h / 2) * k1, float(sigma) + h / 2
        k3 = yield x + (h / 2) * k2, float(sigma) + h / 2
        k4 = yield x + h * k3, float(following)
        x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def make_path(name: str, x: torch.Tensor, grid: Sequence[float], num_train_timesteps: int, order: int = 2) -> Path:
    """The path of sampler ``name`` (``order`` for unipc and dpm) from ``x`` at ``grid[0]`` to ``grid[-1]``."""
    if name == "rk4":
        return rk4_path(x, grid)
    return scheduler_path(make_scheduler(name, num_train_timesteps, order if name != "euler" else 1), x, grid,
                          num_train_timesteps)
