"""Multi-process settings around accelerate's DistributedDataParallel wrapper.

- A longer process-group timeout: rank 0 validates, writes checkpoints and scans data alone while
  the other ranks wait in a barrier; NCCL's default of 10 minutes would end a healthy run.
- Frozen parameters and buffers are excluded from DDP before it wraps the model: only trainable
  weights need gradient reduction, every rank builds identical frozen weights from the same seed,
  and DDP would otherwise check the device of (and broadcast) every frozen tensor, which fails for
  group-offloaded weights that live on the CPU and for quantised tensor subclasses (torchao's
  ``view``/``reshape`` are not implemented for them).
- A failing rank ends the process group at once, so the other ranks stop instead of waiting in a
  barrier until the (long) timeout.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

log = logging.getLogger("vtrain")

# Validation of a real-size model at several resolutions, or a first cache scan, can keep rank 0
# busy for far longer than NCCL's 10-minute default while the other ranks wait.
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)


def accelerator_handlers() -> list[Any]:
    """accelerate ``kwargs_handlers`` for the process group (the longer timeout)."""
    from accelerate.utils import InitProcessGroupKwargs

    return [InitProcessGroupKwargs(timeout=PROCESS_GROUP_TIMEOUT)]


def ignored_for_ddp(model: Any) -> list[str]:
    """Fully-qualified names of ``model``'s frozen parameters and of all its buffers."""
    names = [name for name, param in model.named_parameters() if not param.requires_grad]
    names += [name for name, _ in model.named_buffers()]
    return names


def exclude_frozen_from_ddp(model: Any) -> int:
    """Tell DDP to leave frozen parameters and buffers alone (``_ddp_params_and_buffers_to_ignore``,
    read by ``DistributedDataParallel.__init__``). Returns how many tensors are excluded."""
    from torch.nn.parallel import DistributedDataParallel

    names = ignored_for_ddp(model)
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    return len(names)


def abort_process_group() -> None:
    """After an error on this rank: abort the process group (no collective waits for the peers), so
    the launcher sees this process exit and stops the others. Does nothing without a process group."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    try:
        if abort is not None:
            abort()
        else:  # pragma: no cover - older torch
            dist.destroy_process_group()
    except Exception as error:  # the run is failing already: report the original error, not this one
        log.debug("aborting the process group failed: %s", error)
