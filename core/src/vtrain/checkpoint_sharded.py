"""Sharded checkpoints: the trainable weights, the optimizer and the statefuls through
``torch.distributed.checkpoint`` (DCP), inside the same atomic checkpoint folders as unsharded ones.

Layout of ``checkpoint-<step>/`` written by a sharded run::

    sharded/            DCP: .metadata + one __<rank>_0.distcp file per rank (weights, optimizer, statefuls)
    rng-rank<N>.pt      every rank's RNG state
    lr_scheduler.pt     the LR scheduler
    fingerprint.json    what must not change across a resume (as in unsharded checkpoints)
    manifest.json       size and checksum of every file above, shard files included
    state.json          the loop position (world size included), written last

Each rank writes its shards into the temporary folder, rank 0 flushes it and renames it into place,
as for unsharded checkpoints, so a kill never leaves a folder that looks complete. DCP re-shards on
load, so a checkpoint resumes at any world size, and also in an unsharded (single-process) run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtrain.checkpoint import STATE_FILE, CheckpointWriter, LoopPosition

SHARDED_DIR = "sharded"


def is_sharded_checkpoint(path: Path) -> bool:
    return (path / SHARDED_DIR / ".metadata").is_file()


def trainable_tree(bundle: Any) -> Any:
    """One module holding the model and the plugin-owned trainables under the names the
    trainables carry everywhere else (``model.``, ``<extra name>.``), for DCP's state-dict helpers."""
    import torch

    return torch.nn.ModuleDict({"model": bundle.model, **bundle.extra_trainables})


def _state_options(loading: bool = False) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # a LoRA checkpoint holds the adapter, not the frozen base (so the base is "missing" on load;
    # dcp.load has already refused a checkpoint that lacks any trainable this run has)
    return StateDictOptions(ignore_frozen_params=True, strict=not loading)


class ShardedCheckpointWriter(CheckpointWriter):
    """Writes sharded checkpoints; every rank calls :meth:`save_sharded`."""

    def save_sharded(self, position: LoopPosition, bundle: Any, optimizer: Any, scheduler: Any,
                     statefuls: dict[str, Any]) -> Path:
        import torch
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        acc = self.accelerator
        tmp = self._begin(position.step)
        model_state, optimizer_state = get_state_dict(trainable_tree(bundle), optimizer, options=_state_options())
        state = {"model": model_state, "optimizer": optimizer_state,
                 "statefuls": {name: obj.state_dict() for name, obj in statefuls.items()}}
        dcp.save(state, checkpoint_id=str(tmp / SHARDED_DIR))
        acc.wait_for_everyone()
        if acc.is_main_process:
            torch.save(scheduler.state_dict(), tmp / "lr_scheduler.pt")
        return self._commit(tmp, position)  # the manifest covers every rank's shard files too


def load_sharded_checkpoint(path: Path, bundle: Any, optimizer: Any, scheduler: Any, statefuls: dict[str, Any],
                            process_index: int) -> tuple[LoopPosition, bool]:
    """Restore a sharded checkpoint into this run's model (sharded or not, any world size).
    Returns the position and whether this rank's RNG state was restored."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from vtrain.errors import ConfigError, Problem
    from vtrain.rng import restore_rng_state

    position = LoopPosition(**json.loads((path / STATE_FILE).read_text()))
    tree = trainable_tree(bundle)
    model_state, optimizer_state = get_state_dict(tree, optimizer, options=_state_options())
    state = {"model": model_state, "optimizer": optimizer_state,
             "statefuls": {name: obj.state_dict() for name, obj in statefuls.items()}}
    try:
        dcp.load(state, checkpoint_id=str(path / SHARDED_DIR))
    except Exception as exc:  # DCP names the missing keys; say which setting differs
        raise ConfigError([Problem(f"resume_from_checkpoint: {path}", f"the sharded checkpoint does not match this "
                                   f"run's trainable weights ({type(exc).__name__}: {str(exc)[:300]})",
                                   "resume with the same model, adapter and plugin settings")]) from exc
    set_state_dict(tree, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=_state_options(loading=True))
    for name, obj in statefuls.items():
        obj.load_state_dict(state["statefuls"][name])
    scheduler.load_state_dict(torch.load(path / "lr_scheduler.pt", map_location="cpu", weights_only=False))
    rng_file = path / f"rng-rank{process_index}.pt"
    restored = rng_file.is_file()
    if restored:
        restore_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
    return position, restored
