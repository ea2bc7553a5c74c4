"""Each sampler lands on the flow path between sigma_src and sigma: exactly for an exact velocity field, and
step for step like its diffusers scheduler (or a hand-written RK4) with the tiny LTX-Video model's velocity."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from rollout_helpers import prepare, rows

from vtrain.flow_matching import noisy_latents
from vtrain_rollout.rollout import SIGMA_SOURCE_MAX, draw_steps, roll_out, source_sigmas

SAMPLERS = ("euler", "unipc", "dpm", "rk4")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_exact_velocity_lands_on_the_path(sampler: str) -> None:
    """With v = noise - x0 (the true velocity) every solver reproduces the analytic x_t at the training sigma,
    and every model evaluation is at a sigma between sigma and sigma_src."""
    torch.manual_seed(0)
    x0, noise = torch.randn(3, 4, 2, 4, 4), torch.randn(3, 4, 2, 4, 4)
    sigmas = torch.tensor([0.3, 0.9985, 0.6])
    steps = torch.tensor([4, 3, 0])
    asked: list[tuple[list[int], torch.Tensor]] = []

    def predict(sub: dict[str, Any], x: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        asked.append((sub["row"].tolist(), at))
        return sub["noise"] - sub["latents"]

    batch = {"latents": x0, "noise": noise, "row": torch.arange(3)}
    result = roll_out(predict, batch, x0, noise, sigmas, steps, sampler, 1000, None)
    torch.testing.assert_close(result.noisy_latents, noisy_latents(x0, noise, sigmas), atol=2e-6, rtol=0)
    source = source_sigmas(sigmas, steps, 1000)
    assert float(source[0]) == pytest.approx(0.304) and float(source[1]) == pytest.approx(SIGMA_SOURCE_MAX)
    assert result.rolled.tolist() == [True, True, False]
    for asked_rows, at in asked:
        for row, value in zip(asked_rows, at.tolist()):
            assert float(sigmas[row]) - 1e-7 <= value <= float(source[row]) + 1e-7
    evaluations = {"rk4": 4}.get(sampler, 1)
    assert len(asked) == 4 * evaluations  # batched: the longest path's evaluations, not the sum of all paths
    assert sum(len(r) for r, _ in asked) == (4 + 3) * evaluations


def _scheduler(sampler: str) -> Any:
    """The diffusers scheduler the sampler names, built here from its documented flow-matching settings."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if sampler == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    flow = {"num_train_timesteps": 1000, "prediction_type": "flow_prediction", "use_flow_sigmas": True,
            "flow_shift": 1.0}
    if sampler == "unipc":
        return UniPCMultistepScheduler(**flow)
    return DPMSolverMultistepScheduler(**flow)


def _by_hand(sampler: str, velocity: Any, x: torch.Tensor, grid: list[float]) -> torch.Tensor:
    if sampler == "rk4":
        for sigma, following in zip(grid[:-1], grid[1:]):
            h = following - sigma
            k1 = velocity(x, sigma)
            k2 = velocity(x + h / 2 * k1, sigma + h / 2)
            k3 = velocity(x + h / 2 * k2, sigma + h / 2)
            k4 = velocity(x + h * k3, following)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x
    scheduler = _scheduler(sampler)
    scheduler.set_timesteps(num_inference_steps=len(grid) - 1)
    scheduler.sigmas = torch.tensor(grid, dtype=torch.float32)  # end at the training sigma, not at 0
    scheduler.set_begin_index(0)
    for index, sigma in enumerate(grid[:-1]):
        x = scheduler.step(velocity(x, sigma), scheduler.timesteps[index], x, return_dict=False)[0]
    return x


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_matches_its_scheduler_stepped_by_hand_on_tiny_ltx(sampler: str, rollout_config: dict) -> None:
    runner, bundle, batch = prepare({**rollout_config, "scheduled_sampling_sampler": sampler})
    family = runner.family
    torch.manual_seed(5)
    batch.update(family.draw_flow_inputs(bundle, batch, runner.config, None))
    x0, noise, sigmas = batch["latents"].float(), batch["noise"], batch["sigmas"]
    steps = torch.tensor([3, 2])
    mask = family.fixed_condition_mask(bundle, batch)
    assert mask is not None and bool((mask[:, :, 0] == 1).all()) and not bool(mask[:, :, 1:].any())

    def predict(sub: dict[str, Any], x: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        return family.predict_velocity(bundle, sub, x, at)

    result = roll_out(predict, batch, x0, noise, sigmas, steps, sampler, 1000, mask)
    source = source_sigmas(sigmas, steps, 1000)
    for row in range(2):
        one = rows(batch, [row])

        def velocity(x: torch.Tensor, sigma: float, one: dict = one) -> torch.Tensor:
            with torch.no_grad():
                return family.predict_velocity(bundle, one, x, torch.tensor([sigma]))

        grid = torch.linspace(float(source[row]), float(sigmas[row]), int(steps[row]) + 1).tolist()
        grid[0], grid[-1] = float(source[row]), float(sigmas[row])
        start = noisy_latents(x0[row:row + 1], noise[row:row + 1], source[row:row + 1])
        expected = _by_hand(sampler, velocity, start, grid)
        expected[:, :, 0] = x0[row:row + 1, :, 0]  # the i2v frame stays clean
        torch.testing.assert_close(result.noisy_latents[row:row + 1], expected, atol=1e-5, rtol=1e-5)
    analytic = noisy_latents(x0, noise, sigmas)
    assert not torch.equal(result.noisy_latents[:, :, 1:], analytic[:, :, 1:])  # the model's own errors show
    assert torch.equal(result.noisy_latents[:, :, 0], x0[:, :, 0])


def test_plan_draws_from_the_global_rng() -> None:
    torch.manual_seed(1)
    first = draw_steps(64, 0.5, 5, "cpu")
    torch.manual_seed(1)
    assert torch.equal(first, draw_steps(64, 0.5, 5, "cpu"))
    assert 0 < int((first > 0).sum()) < 64 and int(first.max()) == 5 and int(first.min()) == 0
    assert int((draw_steps(64, 0.0, 5, "cpu") > 0).sum()) == 0
