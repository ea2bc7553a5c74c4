"""One run's rollout settings, read from the ``scheduled_sampling_*`` keys, and the probability over the run.

The probability that a batch item is rolled out is ``scheduled_sampling_probability``, or, with
``scheduled_sampling_ramp_steps`` > 0, a ramp from ``scheduled_sampling_prob_start`` (default 0) to
``scheduled_sampling_prob_end`` (default 0.5): it holds the start value until ``scheduled_sampling_start_step``,
then rises over ``ramp_steps`` updates (linearly, or along half a cosine with ``scheduled_sampling_ramp_shape``
cosine, as SimpleTuner does) and stays at the end value. ``step`` is the number of optimizer updates done
before the current one (``TrainState.step``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

RAMP_START_DEFAULT = 0.0  # SimpleTuner's defaults for the ramp's ends
RAMP_END_DEFAULT = 0.5
SAMPLERS = ("unipc", "euler", "dpm", "rk4")
RAMP_SHAPES = ("linear", "cosine")
STRATEGIES = ("uniform", "biased_early", "biased_late")  # how k is drawn in 0..max (SimpleTuner's names)


@dataclass(frozen=True)
class RolloutSettings:
    """See the module docstring; ``reflexflow`` is already resolved (``None`` in the config means "on")."""

    max_step_offset: int = 0
    probability: float = 0.0
    ramp_steps: int = 0
    prob_start: float = RAMP_START_DEFAULT
    prob_end: float = RAMP_END_DEFAULT
    sampler: str = "unipc"
    reflexflow: bool = False
    alpha: float = 1.0
    beta1: float = 10.0
    beta2: float = 1.0
    start_step: int = 0
    ramp_shape: str = "linear"
    strategy: str = "uniform"
    order: int = 2

    @classmethod
    def from_config(cls, config: Any) -> RolloutSettings:
        start, end = config.scheduled_sampling_prob_start, config.scheduled_sampling_prob_end
        reflexflow = config.scheduled_sampling_reflexflow
        return cls(
            max_step_offset=config.scheduled_sampling_max_step_offset,
            probability=config.scheduled_sampling_probability,
            ramp_steps=config.scheduled_sampling_ramp_steps,
            prob_start=RAMP_START_DEFAULT if start is None else start,
            prob_end=RAMP_END_DEFAULT if end is None else end,
            sampler=config.scheduled_sampling_sampler,
            reflexflow=True if reflexflow is None else bool(reflexflow),
            alpha=config.scheduled_sampling_reflexflow_alpha,
            beta1=config.scheduled_sampling_reflexflow_beta1,
            beta2=config.scheduled_sampling_reflexflow_beta2,
            start_step=config.scheduled_sampling_start_step,
            ramp_shape=config.scheduled_sampling_ramp_shape,
            strategy=config.scheduled_sampling_strategy,
            order=config.scheduled_sampling_order,
        )

    @property
    def enabled(self) -> bool:
        """Whether any step of the run can roll out."""
        if self.max_step_offset <= 0:
            return False
        if self.ramp_steps > 0:
            return self.prob_start > 0 or self.prob_end > 0
        return self.probability > 0

    def probability_at(self, step: int) -> float:
        """The share of batch items rolled out in the update after ``step`` updates."""
        if self.max_step_offset <= 0:
            return 0.0
        if self.ramp_steps <= 0:
            return self.probability
        done = step - self.start_step
        if done >= self.ramp_steps:
            return self.prob_end  # exactly, not start + (end - start) * 1.0
        if done <= 0:
            return self.prob_start
        progress = done / self.ramp_steps
        if self.ramp_shape == "cosine":
            progress = 0.5 - 0.5 * math.cos(math.pi * progress)
        return self.prob_start + (self.prob_end - self.prob_start) * progress
