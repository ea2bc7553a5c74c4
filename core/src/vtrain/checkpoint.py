"""Checkpoints that cannot be lost: written to a temporary folder, flushed, then renamed.

A checkpoint holds the trainable weights, optimizer, LR scheduler, every rank's RNG state,
the loop position and the state of every registered stateful object (EMA, a plugin's counters),
the run's fingerprint (what must not change across a resume, see :mod:`vtrain.fingerprint`) and a
manifest of every file's size and checksum, verified before the checkpoint is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vtrain.atomic import atomic_write_json, fsync_dir, fsync_tree, remove_stale_temporaries

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
FINGERPRINT_FILE = "fingerprint.json"


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


def list_checkpoint_folders(output_dir: Path) -> list[Path]:
    """Every ``checkpoint-N`` folder of ``output_dir``, complete or not."""
    if not output_dir.is_dir():
        return []
    return sorted(e for e in output_dir.iterdir() if CHECKPOINT_RE.match(e.name) and e.is_dir())


def _file_crc32(path: Path) -> str:
    """CRC-32 of a file (streamed): catches accidental damage at several times the speed of a hash."""
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def write_manifest(folder: Path) -> None:
    """Record the size and checksum of every file of a checkpoint folder (written last but ``state.json``)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in (MANIFEST_FILE, STATE_FILE):
            files[str(path.relative_to(folder))] = {"size": path.stat().st_size, "crc32": _file_crc32(path)}
    (folder / MANIFEST_FILE).write_text(json.dumps({"version": 1, "files": files}, indent=2) + "\n")


def verify_checkpoint(folder: Path) -> str | None:
    """``None`` when ``folder`` is intact, else what is wrong with it (naming the file).

    A checkpoint written before manifests existed is checked for its files only.
    """
    state = folder / STATE_FILE
    try:
        LoopPosition(**json.loads(state.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        return f"{STATE_FILE} is unreadable ({type(exc).__name__})"
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        missing = [n for n in ("trainable.safetensors", "optimizer.pt", "lr_scheduler.pt") if not (folder / n).is_file()]
        return f"{missing[0]} is missing" if missing else _safetensors_problem(folder / "trainable.safetensors")
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST_FILE} is unreadable"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file() and name.startswith("rng-rank"):
            continue  # the resume reseeds that rank and says so
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} is {size} bytes, {expected['size']} were written (truncated or overwritten)"
        if _file_crc32(path) != expected["crc32"]:
            return f"{name} does not match its checksum (damaged)"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """For checkpoints without a manifest: is the weights file as long as its own header says?"""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return f"{path.name} is not a readable safetensors file"
    if path.stat().st_size != 8 + size + end:
        return f"{path.name} is {path.stat().st_size} bytes, its header describes {8 + size + end} (truncated)"
    return None


def find_resume_path(output_dir: Path, spec: str | None, say: Callable[[str], Any] = print) -> Path | None:
    """The verified checkpoint to resume from, or ``None`` (no ``spec``, or ``latest`` with no checkpoint).

    ``latest`` takes the newest intact checkpoint; each damaged newer one is named in a note. A
    named checkpoint that is damaged is refused with :class:`~vtrain.errors.ConfigError`.
    """
    from vtrain.errors import ConfigError, Problem

    if not spec:
        return None
    if spec != "latest":
        path = Path(spec)
        problem = verify_checkpoint(path) if (path / STATE_FILE).is_file() else f"{STATE_FILE} is missing"
        if problem:
            intact = [p.name for _, p in list_checkpoints(path.parent) if p != path and not verify_checkpoint(p)]
            raise ConfigError([Problem(f"resume_from_checkpoint: {path}", f"the checkpoint is damaged: {problem}",
                                       f"resume from an intact one ({', '.join(intact)})" if intact else
                                       "resume from another checkpoint, or start afresh")])
        return path
    for _step, path in reversed(list_checkpoints(output_dir)):
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        say(f"note: {path} is damaged ({problem}); trying the checkpoint before it")
    return None


class CheckpointWriter:
    """Writes and rotates checkpoints; rank 0 writes, every rank contributes its RNG state."""

    def __init__(self, output_dir: Path, total_limit: int | None, accelerator: Any,
                 fingerprint: dict[str, Any] | None = None) -> None:
        self.output_dir = output_dir
        self.total_limit = total_limit
        self.accelerator = accelerator
        self.fingerprint = fingerprint

    def save(self, position: LoopPosition, trainables: dict[str, Any], optimizer: Any, scheduler: Any,
             statefuls: dict[str, Any]) -> Path:
        import torch
        from safetensors.torch import save_file

        acc = self.accelerator
        tmp = self._begin(position.step)
        acc.wait_for_everyone()
        if acc.is_main_process:
            tensors = {name: p.detach().to("cpu").contiguous() for name, p in trainables.items()}
            save_file(tensors, str(tmp / "trainable.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "lr_scheduler.pt")
            torch.save({name: obj.state_dict() for name, obj in statefuls.items()}, tmp / "statefuls.pt")
        return self._commit(tmp, position)

    def _begin(self, step: int) -> Path:
        """Create the temporary folder of checkpoint ``step`` (rank 0) and write every rank's RNG state."""
        import torch

        from vtrain.rng import capture_rng_state

        acc = self.accelerator
        tmp = self.output_dir / f".checkpoint-{step}.tmp-0"
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(capture_rng_state(), tmp / f"rng-rank{acc.process_index}.pt")
        return tmp

    def _commit(self, tmp: Path, position: LoopPosition) -> Path:
        """Rank 0 adds the fingerprint, manifest (every file, all ranks' included) and position, fsyncs and
        renames ``tmp`` into place (an existing folder is moved aside first, never half-deleted), then
        rotates. Every rank returns the final path."""
        acc = self.accelerator
        final = self.output_dir / f"checkpoint-{position.step}"
        if acc.is_main_process:
            if self.fingerprint is not None:
                (tmp / FINGERPRINT_FILE).write_text(json.dumps(self.fingerprint, indent=2, sort_keys=True) + "\n")
            write_manifest(tmp)
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
    saved = _read(path, "trainable.safetensors", lambda f: load_file(str(f)))
    mismatch = describe_weight_mismatch(saved, trainables)
    if mismatch:
        raise ConfigError([Problem(f"resume_from_checkpoint: {path}",
                                   f"the checkpoint's trainable weights do not fit this run: {mismatch}",
                                   "resume with the same model, adapter and plugin settings as the checkpoint "
                                   "(see its fingerprint.json), or start afresh in another output_dir")])
    with torch.no_grad():
        for name, param in trainables.items():
            param.copy_(saved[name].to(param.device, param.dtype))

    # map_location="cpu": the files hold rank 0's CUDA tensors; without it every rank would load them onto
    # cuda:0. load_state_dict then moves the optimizer state to each parameter's own device.
    def torch_file(file: Path) -> Any:
        return torch.load(file, map_location="cpu", weights_only=False)

    fresh = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    _read(path, "optimizer.pt", lambda f: optimizer.load_state_dict(torch_file(f)),
          "resume with the checkpoint's optimizer and optimizer_config")
    _read(path, "lr_scheduler.pt", lambda f: scheduler.load_state_dict(torch_file(f)),
          "resume with the checkpoint's lr_scheduler")
    keep_new_hyperparameters(optimizer, scheduler, fresh)
    saved_statefuls = _read(path, "statefuls.pt", torch_file)
    for name, obj in statefuls.items():
        if name in saved_statefuls:
            _read(path, "statefuls.pt", lambda _f, obj=obj, name=name: obj.load_state_dict(saved_statefuls[name]),
                  f"resume with the plugin settings of the checkpoint (the state of {name!r} does not fit)")
    rng_file = path / f"rng-rank{process_index}.pt"
    restored = rng_file.is_file()
    if restored:
        restore_rng_state(_read(path, rng_file.name, torch_file))
    return position, restored


# optimizer group settings that come from the config (never state that evolves, such as Prodigy's d)
_CONFIG_GROUP_KEYS = ("betas", "weight_decay", "eps", "momentum")


def keep_new_hyperparameters(optimizer: Any, scheduler: Any, fresh: list[dict[str, Any]]) -> None:
    """After restoring optimizer and scheduler state, apply this run's learning rate and group settings.

    ``load_state_dict`` brings back the checkpoint's ``lr``/``initial_lr``/``betas``..., which would
    silently ignore a learning rate changed for the resume. Each group's learning rate is rescaled
    by new/old initial rate (the schedule's position is kept), and the config-derived settings of
    ``fresh`` (the groups as built for this run) replace the saved ones. Unchanged settings leave
    every value as restored, so a plain resume stays bit-exact.
    """
    if len(fresh) != len(optimizer.param_groups):
        return
    base_lrs = list(getattr(scheduler, "base_lrs", []))
    for index, (group, new) in enumerate(zip(optimizer.param_groups, fresh, strict=True)):
        new_initial = new.get("initial_lr", new.get("lr"))
        old_initial = group.get("initial_lr", base_lrs[index] if index < len(base_lrs) else None)
        if new_initial is not None and old_initial and new_initial != old_initial:
            ratio = float(new_initial) / float(old_initial)
            group["lr"] = group["lr"] * ratio
            if "initial_lr" in group:
                group["initial_lr"] = new_initial
            if index < len(base_lrs):
                base_lrs[index] = new_initial
        for key in _CONFIG_GROUP_KEYS:
            if key in new and key in group and group[key] != new[key]:
                group[key] = new[key]
    if base_lrs:
        scheduler.base_lrs = base_lrs
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def _read(folder: Path, name: str, loader: Callable[[Path], Any], fix: str = "") -> Any:
    """``loader(folder / name)``; any failure becomes a :class:`ConfigError` naming the file (no traceback)."""
    from vtrain.errors import ConfigError, Problem

    try:
        return loader(folder / name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError([Problem(f"resume_from_checkpoint: {folder}",
                                   f"{name} cannot be used: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                                   fix or "resume from another checkpoint (resume_from_checkpoint latest skips damaged "
                                   "ones), or start afresh")]) from None


def describe_weight_mismatch(saved: dict[str, Any], trainables: dict[str, Any]) -> str | None:
    """What differs between a checkpoint's weights and this run's trainables, naming the first keys."""
    missing = sorted(set(trainables) - set(saved))
    unexpected = sorted(set(saved) - set(trainables))
    if missing or unexpected:
        return (f"{len(missing)} weight(s) of this run are not in it (first: {missing[:3]}) and {len(unexpected)} of "
                f"its weights are not in this run (first: {unexpected[:3]})")
    for name in sorted(trainables):
        have, want = tuple(saved[name].shape), tuple(trainables[name].shape)
        if have != want:
            return (f"{name!r} has shape {have} in the checkpoint and {want} in this run "
                    "(a changed adapter shape, e.g. lora_rank or the target modules)")
    return None


def read_fingerprint(path: Path) -> dict[str, Any] | None:
    """The fingerprint stored in checkpoint ``path`` (``None`` for checkpoints written before fingerprints)."""
    try:
        data = json.loads((path / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_run_info(output_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(output_dir / "run_info.json", info)
