"""Group offloading of the denoiser's frozen block weights, built on diffusers' group-offloading hooks.

diffusers moves whole modules between the offload device (CPU RAM, or a safetensors file per
group) and the accelerator around each group's forward. That suits inference; for training two
kinds of tensors must never move:

- trainable parameters (LoRA, LyCORIS): the optimizer and their gradients live on the accelerator;
- the small parts outside the repeated blocks (input/output projections, timestep and caption
  embeddings, norms): the family reads the model's device from them to place the VAE and text
  encoder, and they are a tiny share of the weights.

Groups are created in the ``place_model`` phase, before adapters exist. After the adapters are
attached (``optimize_model``), :func:`keep_resident` rewrites each group so that it moves only
frozen tensors inside the blocks, and puts everything else on the accelerator for good.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger("vtrain.offload")
HOOK_NAMES = ("group_offloading", "lazy_prefetch_group_offloading")


@dataclass(frozen=True)
class GroupOffloadPlan:
    """What :func:`apply` did, for the summary and :func:`keep_resident`."""

    offload_type: str
    blocks_per_group: int | None
    use_stream: bool
    disk_path: str | None
    onload_device: str


def apply(model: torch.nn.Module, onload_device: torch.device, offload_type: str, blocks_per_group: int,
          use_stream: bool, disk_path: str | None) -> GroupOffloadPlan:
    """Install diffusers' group-offloading hooks on ``model`` so that they move only the frozen tensors
    inside its blocks; everything outside the blocks keeps its data (see :func:`keep_resident`)."""
    import torch
    from diffusers.hooks import apply_group_offloading

    model.to("cpu")
    if disk_path:
        _clear_stale_groups(disk_path)
    movable = block_tensor_ids(model)
    # installing the hooks offloads at once (to disk: the data is replaced by empty tensors), so keep
    # the data of the tensors that will stay resident
    outside = {id(t): (t, t.data) for t in [*model.parameters(), *model.buffers()] if id(t) not in movable}
    per_group = blocks_per_group if offload_type == "block_level" else None
    apply_group_offloading(model, onload_device=onload_device, offload_device=torch.device("cpu"),
                           offload_type=offload_type, num_blocks_per_group=per_group, use_stream=use_stream,
                           offload_to_disk_path=disk_path)
    for tensor, data in outside.values():
        tensor.data = data
    for group in groups(model):
        _restrict(group, movable)
    return GroupOffloadPlan(offload_type, per_group, use_stream, disk_path, str(onload_device))


def _clear_stale_groups(disk_path: str) -> None:
    """diffusers reuses a ``group_<hash>.safetensors`` file that already exists; one left by an earlier
    run holds other weights, so remove them before the hooks are installed."""
    from pathlib import Path

    folder = Path(disk_path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("group_*.safetensors"):
        stale.unlink()


def block_tensor_ids(model: torch.nn.Module) -> set[int]:
    """ids of the frozen parameters and the buffers inside the model's block lists (``ModuleList`` /
    ``Sequential`` children of the model: what diffusers' block-level offloading groups)."""
    import torch

    ids: set[int] = set()
    for child in model.children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            ids.update(id(t) for t in child.parameters() if not t.requires_grad)
            ids.update(id(t) for t in child.buffers())
    return ids


def groups(model: torch.nn.Module) -> list[Any]:
    """Every diffusers ``ModuleGroup`` installed on ``model`` and its submodules (each once)."""
    found: dict[int, Any] = {}
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is None:
            continue
        for name in HOOK_NAMES:
            hook = registry.get_hook(name)
            group = getattr(hook, "group", None)
            if group is not None:
                found.setdefault(id(group), group)
    return list(found.values())


def _restrict(group: Any, movable: set[int]) -> int:
    """Make ``group`` move only the tensors in ``movable``, one by one (``module.to()`` would also move
    adapters attached later). Returns how many tensors it still moves."""
    params, buffers = _group_tensors(group)
    keep_params = [p for p in params if id(p) in movable]
    keep_buffers = [b for b in buffers if id(b) in movable]
    group.modules = []
    group.parameters, group.buffers = keep_params, keep_buffers
    kept = {id(t) for t in (*keep_params, *keep_buffers)}
    if getattr(group, "offload_to_disk_path", None):
        group.tensor_to_key = {t: k for t, k in group.tensor_to_key.items() if id(t) in kept}
        group.key_to_tensor = {k: t for t, k in group.tensor_to_key.items()}
    return len(kept)


def offloaded_ids(model: torch.nn.Module) -> set[int]:
    """ids of the tensors the installed groups move."""
    ids: set[int] = set()
    for group in groups(model):
        params, buffers = _group_tensors(group)
        ids.update(id(t) for t in (*params, *buffers))
    return ids


def keep_resident(model: torch.nn.Module, onload_device: torch.device) -> tuple[int, int]:
    """After the adapters are attached: put every tensor the groups do not move (adapters, the parts
    outside the blocks) on ``onload_device`` for good. Returns (tensors offloaded, tensors resident)."""
    import torch

    moving = offloaded_ids(model)
    trainable_moving = [n for n, p in model.named_parameters() if p.requires_grad and id(p) in moving]
    if trainable_moving:
        raise RuntimeError(f"group offload would move trainable parameters {trainable_moving[:3]}; "
                           "only frozen weights may be offloaded")
    resident = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if id(tensor) in moving:
                continue
            if tensor.device != onload_device:
                tensor.data = tensor.data.to(onload_device)
            resident += 1
    return len(moving), resident


def _group_tensors(group: Any) -> tuple[list[Any], list[Any]]:
    params: dict[int, Any] = {}
    buffers: dict[int, Any] = {}
    for module in group.modules:
        for p in module.parameters():
            params.setdefault(id(p), p)
        for b in module.buffers():
            buffers.setdefault(id(b), b)
    for p in group.parameters:
        params.setdefault(id(p), p)
    for b in group.buffers:
        buffers.setdefault(id(b), b)
    return list(params.values()), list(buffers.values())
