"""How long a run is, in updates and epochs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig


@dataclass(frozen=True)
class RunLength:
    """:param total_steps: updates the run makes; :param max_epochs: epochs it may start (None: unbounded);
    :param updates_per_epoch: updates one epoch gives on each rank."""

    total_steps: int
    max_epochs: int | None
    updates_per_epoch: float


def plan_run_length(config: ResolvedConfig, batches_per_epoch: int) -> RunLength:
    """``max_train_steps`` wins when set; epochs end the run too unless ``ignore_final_epochs``."""
    per_epoch = batches_per_epoch / config.gradient_accumulation_steps
    epochs_bound = config.num_train_epochs > 0 and not (config.ignore_final_epochs and config.max_train_steps > 0)
    max_epochs = config.num_train_epochs if epochs_bound else None
    if config.max_train_steps > 0:
        total = config.max_train_steps
        if max_epochs is not None:
            total = min(total, math.floor(per_epoch * max_epochs))
    else:
        total = math.floor(per_epoch * config.num_train_epochs)
    return RunLength(total_steps=total, max_epochs=max_epochs, updates_per_epoch=per_epoch)
