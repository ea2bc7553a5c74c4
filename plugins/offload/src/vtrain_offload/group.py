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
from collections.abc import Iterator
from contextlib import contextmanager
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
    last_blocks: int | None = None  # only the last N blocks of each block list move (musubi_blocks_to_swap)


def apply(model: torch.nn.Module, onload_device: torch.device, offload_type: str, blocks_per_group: int,
          use_stream: bool, disk_path: str | None, last_blocks: int | None = None) -> GroupOffloadPlan:
    """Install diffusers' group-offloading hooks on ``model`` so that they move only the frozen tensors
    inside its blocks (only the last ``last_blocks`` of each block list when given); everything else keeps
    its data (see :func:`keep_resident`)."""
    import torch
    from diffusers.hooks import apply_group_offloading

    model.to("cpu")
    if disk_path:
        _clear_stale_groups(disk_path)
    movable = block_tensor_ids(model, last_blocks)
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
    defer_offload_in_backward(model)
    return GroupOffloadPlan(offload_type, per_group, use_stream, disk_path, str(onload_device), last_blocks)


def _clear_stale_groups(disk_path: str) -> None:
    """diffusers reuses a ``group_<hash>.safetensors`` file that already exists; one left by an earlier
    run holds other weights, so remove them before the hooks are installed."""
    from pathlib import Path

    folder = Path(disk_path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("group_*.safetensors"):
        stale.unlink()


def block_tensor_ids(model: torch.nn.Module, last_blocks: int | None = None) -> set[int]:
    """ids of the frozen parameters and the buffers inside the model's block lists (``ModuleList`` /
    ``Sequential`` children of the model: what diffusers' block-level offloading groups), or inside the
    last ``last_blocks`` blocks of each list."""
    import torch

    ids: set[int] = set()
    for child in model.children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            blocks = list(child)[-last_blocks:] if last_blocks else list(child)
            for block in blocks:
                ids.update(id(t) for t in block.parameters() if not t.requires_grad)
                ids.update(id(t) for t in block.buffers())
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


def moves_whole(tensor: Any) -> bool:
    """Whether ``tensor`` must be moved whole: a tensor subclass keeping its payload in inner tensors
    (``__tensor_flatten__``: torchao's ``NF4Tensor``) that diffusers does not swap itself. diffusers assigns
    ``param.data``, which replaces only the outer wrapper and leaves the inner tensors where they were; it
    swaps torchao's ``TorchAOBaseTensor`` subclasses whole, but not the others."""
    from diffusers.hooks.group_offloading import _is_torchao_tensor
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    return is_traceable_wrapper_subclass(tensor) and not _is_torchao_tensor(tensor)


def move_whole(tensors: list[Any], device: Any) -> None:
    """Move each tensor subclass with everything inside it (``.to()``), keeping the Python object (so the
    module, the group and any dict keyed by it still hold it)."""
    import torch

    for tensor in tensors:
        if tensor.device != torch.device(device):
            torch.utils.swap_tensors(tensor, tensor.to(device))


def _restrict(group: Any, movable: set[int]) -> int:
    """Make ``group`` move only the tensors in ``movable``, one by one (``module.to()`` would also move
    adapters attached later); the ones that must move whole (:func:`moves_whole`) are moved by the group's
    ``onload_`` / ``offload_`` after diffusers' own transfer. Returns how many tensors it still moves."""
    params, buffers = _group_tensors(group)
    keep_params = [p for p in params if id(p) in movable]
    keep_buffers = [b for b in buffers if id(b) in movable]
    group._vtrain_whole_params = [p for p in keep_params if moves_whole(p)]
    group._vtrain_whole_buffers = [b for b in keep_buffers if moves_whole(b)]
    group._vtrain_whole = [*group._vtrain_whole_params, *group._vtrain_whole_buffers]
    whole_ids = {id(t) for t in group._vtrain_whole}
    group.modules = []
    group.parameters = [p for p in keep_params if id(p) not in whole_ids]
    group.buffers = [b for b in keep_buffers if id(b) not in whole_ids]
    if whole_ids:
        real_onload, real_offload = group.onload_, group.offload_

        def onload_(group: Any = group, real_onload: Any = real_onload) -> None:
            real_onload()
            move_whole(group._vtrain_whole, group.onload_device)

        def offload_(group: Any = group, real_offload: Any = real_offload) -> None:
            real_offload()
            move_whole(group._vtrain_whole, group.offload_device)

        group.onload_, group.offload_ = onload_, offload_
    kept = {id(t) for t in (*keep_params, *keep_buffers)}
    if getattr(group, "offload_to_disk_path", None):
        group.tensor_to_key = {t: k for t, k in group.tensor_to_key.items() if id(t) in kept and id(t) not in whole_ids}
        group.key_to_tensor = {k: t for t, k in group.tensor_to_key.items()}
    return len(kept)


def offloaded_ids(model: torch.nn.Module) -> set[int]:
    """ids of the tensors the installed groups move."""
    ids: set[int] = set()
    for group in groups(model):
        params, buffers = _group_tensors(group)
        ids.update(id(t) for t in (*params, *buffers))
    return ids


def defer_offload_in_backward(model: torch.nn.Module) -> None:
    """Keep a group's weights until its backward pass has used them.

    Under gradient checkpointing each block is recomputed inside the backward pass, and the recomputed
    operations keep references to the block's weight tensors. diffusers' hooks would offload them right
    after the recompute (to disk: replaced by empty tensors), so the gradients would be computed from
    moved or garbage data. Inside the backward pass an offload is therefore postponed until a group of
    another block is loaded (the backward pass has then left the block), or the backward pass ends.
    """
    import torch

    block_of: dict[int, int] = {}
    block_modules: list[torch.nn.Module] = []
    for child in model.children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            for block in child:
                for tensor in [*block.parameters(), *block.buffers()]:
                    block_of[id(tensor)] = len(block_modules)
                block_modules.append(block)
    pending: dict[int, Any] = {}
    flush_queued = [False]

    def flush_at_backward_end() -> None:
        # the backward pass is over: nothing holds the deferred groups any more
        flush_queued[0] = False
        for other_id, (_other, _blocks, other_offload) in list(_pending_entries(pending).items()):
            pending.pop(other_id, None)
            other_offload()

    for group in groups(model):
        params, buffers = _group_tensors(group)
        blocks = frozenset(block_of[id(t)] for t in (*params, *buffers) if id(t) in block_of)
        real_offload, real_onload = group.offload_, group.onload_

        def offload_(group: Any = group, real_offload: Any = real_offload) -> None:
            if torch._C._current_graph_task_id() != -1:  # inside the backward pass
                pending[id(group)] = group
                if not flush_queued[0]:
                    flush_queued[0] = True
                    torch.autograd.Variable._execution_engine.queue_callback(flush_at_backward_end)
                return
            pending.pop(id(group), None)
            real_offload()
            group._vtrain_loaded = False

        def onload_(group: Any = group, blocks: frozenset[int] = blocks, real_onload: Any = real_onload) -> None:
            for other_id, (other, other_blocks, other_offload) in list(_pending_entries(pending).items()):
                if other is not group and not (other_blocks & blocks):
                    pending.pop(other_id, None)
                    other_offload()
            pending.pop(id(group), None)
            real_onload()
            group._vtrain_loaded = True

        def real_offload_and_mark(group: Any = group, real_offload: Any = real_offload) -> None:
            real_offload()
            group._vtrain_loaded = False

        group._vtrain_blocks, group._vtrain_offload, group._vtrain_loaded = blocks, real_offload_and_mark, False
        group.offload_, group.onload_ = offload_, onload_
        if len(blocks) > 1:
            # diffusers loads a multi-block group when its first block runs; the backward pass recomputes
            # the blocks last to first, so any block of the group must be able to load it
            for index in blocks:
                block_modules[index].register_forward_pre_hook(
                    lambda _module, _args, group=group: None if group._vtrain_loaded else group.onload_())


@contextmanager
def full_recompute() -> Iterator[None]:
    """Forward passes inside this block record checkpoints that recompute each block to its end.

    torch's non-reentrant checkpoint stops a recompute as soon as the tensors the backward pass needs
    exist (early stop), which is before diffusers' post-forward hook offloads the block again: every
    block reloaded by the backward pass would stay on the accelerator. The setting is read when the
    checkpoint is recorded, so it must wrap the forward."""
    from torch.utils.checkpoint import set_checkpoint_early_stop

    with set_checkpoint_early_stop(False):
        yield


def _pending_entries(pending: dict[int, Any]) -> dict[int, tuple[Any, frozenset[int], Any]]:
    return {key: (g, g._vtrain_blocks, g._vtrain_offload) for key, g in pending.items()}


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
            if moves_whole(tensor):  # a quantised weight outside the blocks: ``.data`` would leave its scales
                move_whole([tensor], onload_device)
            elif tensor.device != onload_device:
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
    for p in getattr(group, "_vtrain_whole_params", ()):  # moved whole by the group's own onload_ / offload_
        params.setdefault(id(p), p)
    for b in getattr(group, "_vtrain_whole_buffers", ()):
        buffers.setdefault(id(b), b)
    return list(params.values()), list(buffers.values())
