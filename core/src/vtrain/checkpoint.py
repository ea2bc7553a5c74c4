"""Checkpoints that cannot be lost: written to a temporary folder, flushed, then renamed.

A checkpoint holds the trainable weights, optimizer, LR scheduler, every rank's RNG state,
the loop position and the state of every registered stateful object (EMA, a plugin's counters).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vtrain.atomic import atomic_write_json, fsync_dir, fsync_tree, remove_stale_temporaries

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "state.json"


@dataclass
class LoopPosition:
    """Where the loop stands: updates done and the data position."""

    step: int
    epoch: int
    batch_in_epoch: int
    world_size: int
    seed: int


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    found = []
    if output_dir.is_dir():
        for entry in output_dir.iterdir():
            match = CHECKPOINT_RE.match(entry.name)
            if match and entry.is_dir() and (entry / STATE_FILE).is_file():
                found.append((int(match.group(1)), entry))
    return sorted(found)


def find_resume_path(output_dir: Path, spec: str | None) -> Path | None:
    """``latest`` gives the newest complete checkpoint or ``None`` on a fresh ``output_dir``."""
    if not spec:
        return None
    if spec == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1][1] if checkpoints else None
    return Path(spec)


class CheckpointWriter:
    """Writes and rotates checkpoints; rank 0 writes, every rank contributes its RNG state."""

    def __init__(self, output_dir: Path, total_limit: int | None, accelerator: Any) -> None:
        self.output_dir = output_dir
        self.total_limit = total_limit
        self.accelerator = accelerator

    def save(self, position: LoopPosition, trainables: dict[str, Any], optimizer: Any, scheduler: Any,
             statefuls: dict[str, Any]) -> Path:
        import torch
        from safetensors.torch import save_file

        from vtrain.rng import capture_rng_state

        acc = self.accelerator
        final = self.output_dir / f"checkpoint-{position.step}"
        tmp = self.output_dir / f".checkpoint-{position.step}.tmp-0"
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(capture_rng_state(), tmp / f"rng-rank{acc.process_index}.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            tensors = {name: p.detach().to("cpu").contiguous() for name, p in trainables.items()}
            save_file(tensors, str(tmp / "trainable.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "lr_scheduler.pt")
            torch.save({name: obj.state_dict() for name, obj in statefuls.items()}, tmp / "statefuls.pt")
            (tmp / STATE_FILE).write_text(json.dumps(asdict(position), indent=2) + "\n")
            fsync_tree(tmp)
            old = self.output_dir / f".{final.name}.old-{os.getpid()}"
            if final.exists():  # a rerun over an old output_dir: move it aside, never half-delete it in place
                os.replace(final, old)
            os.replace(tmp, final)
            fsync_dir(self.output_dir)
            shutil.rmtree(old, ignore_errors=True)
            self._rotate()
        acc.wait_for_everyone()
        return final

    def _rotate(self) -> None:
        if not self.total_limit:
            return
        checkpoints = list_checkpoints(self.output_dir)
        for _step, path in checkpoints[: max(0, len(checkpoints) - self.total_limit)]:
            doomed = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, doomed)  # never leave a half-deleted folder that looks complete
            shutil.rmtree(doomed, ignore_errors=True)

    def clean_leftovers(self) -> list[Path]:
        if self.accelerator.is_main_process:
            return remove_stale_temporaries(self.output_dir)
        return []


def load_checkpoint(path: Path, trainables: dict[str, Any], optimizer: Any, scheduler: Any,
                    statefuls: dict[str, Any], process_index: int) -> tuple[LoopPosition, bool]:
    """Restore everything saved by :meth:`CheckpointWriter.save`. Returns the position and whether
    this rank's RNG state was restored (a changed world size reseeds instead)."""
    import torch
    from safetensors.torch import load_file

    from vtrain.errors import ConfigError, Problem
    from vtrain.rng import restore_rng_state

    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ConfigError([Problem(f"resume_from_checkpoint: {path}", "not a complete checkpoint (no state.json)",
                                   "use latest, or another checkpoint-<step> folder")])
    position = LoopPosition(**json.loads(state_file.read_text()))
    saved = load_file(str(path / "trainable.safetensors"))
    missing = sorted(set(trainables) - set(saved))
    unexpected = sorted(set(saved) - set(trainables))
    if missing or unexpected:
        raise ConfigError([Problem(f"resume_from_checkpoint: {path}",
                                   f"the checkpoint's trainable weights do not match this run "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})",
                                   "resume with the same model, adapter and plugin settings")])
    with torch.no_grad():
        for name, param in trainables.items():
            param.copy_(saved[name].to(param.device, param.dtype))
    # map_location="cpu": the files hold rank 0's CUDA tensors; without it every rank would load them onto
    # cuda:0. load_state_dict then moves the optimizer state to each parameter's own device.
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "lr_scheduler.pt", map_location="cpu", weights_only=False))
    saved_statefuls = torch.load(path / "statefuls.pt", map_location="cpu", weights_only=False)
    for name, obj in statefuls.items():
        if name in saved_statefuls:
            obj.load_state_dict(saved_statefuls[name])
    rng_file = path / f"rng-rank{process_index}.pt"
    restored = rng_file.is_file()
    if restored:
        restore_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
    return position, restored


def write_run_info(output_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(output_dir / "run_info.json", info)
