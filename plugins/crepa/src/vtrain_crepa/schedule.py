"""The CREPA weight over the run: warm-up, a linear ramp to ``crepa_lambda_end``, and a cut-off.

- steps ``0 .. crepa_warmup_steps-1``: the weight rises linearly, ``lambda(s) * (s+1)/warmup``;
- from 0 to the end step (``crepa_cutoff_step`` if set, else the run's last step) the base weight
  moves linearly from ``crepa_lambda`` to ``crepa_lambda_end`` (constant when that is unset);
- from ``crepa_cutoff_step`` on the weight is 0 and CREPA does no work at all (no capture, no encoder).

``step`` is the number of optimizer updates done before the current one (``TrainState.step``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightSchedule:
    """See the module docstring. ``cutoff_step`` 0 means never."""

    start: float
    end: float | None = None
    warmup_steps: int = 0
    cutoff_step: int = 0

    @classmethod
    def from_config(cls, config: Any) -> WeightSchedule:
        return cls(start=config.crepa_lambda, end=config.crepa_lambda_end, warmup_steps=config.crepa_warmup_steps,
                   cutoff_step=config.crepa_cutoff_step)

    def weight(self, step: int, total_steps: int = 0) -> float:
        """The weight of the CREPA term for the update after ``step`` updates of ``total_steps``."""
        if self.cutoff_step and step >= self.cutoff_step:
            return 0.0
        value = self.start
        if self.end is not None:
            last = self.cutoff_step or total_steps
            fraction = min(max(step / last, 0.0), 1.0) if last > 0 else 0.0
            value = self.start + (self.end - self.start) * fraction
        if self.warmup_steps and step < self.warmup_steps:
            value *= (step + 1) / self.warmup_steps
        return value
