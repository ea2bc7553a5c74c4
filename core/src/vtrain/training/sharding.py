"""Sharded training with PyTorch FSDP2 (``fully_shard``, DTensor): mesh, wrapping, clipping, gathering.

accelerate 1.15 switches to its FSDP mode only on accelerator devices (its ``MULTI_CPU`` state never
becomes ``FSDP``), so vtrain applies ``torch.distributed.fsdp.fully_shard`` itself, in the order
accelerate's ``fsdp2_prepare_model`` does (activation checkpointing, each repeated block, then the
root) and with accelerate's ``fsdp2_load_full_state_dict`` for rank-0 loading. The same code then runs
on GPUs (NCCL) and in the CPU tests (gloo). accelerate still launches the processes, owns the process
group, autocast and the collectives used elsewhere (``reduce``, ``clip_grad_norm_``).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from vtrain.config import ResolvedConfig
    from vtrain.family import Artifact, ModelBundle, ModelFamily
    from vtrain.run import RunContext


def mesh_shape(config: ResolvedConfig, world_size: int) -> tuple[int, int]:
    """(replicate, shard) degrees: HSDP when replicate > 1, plain FSDP otherwise."""
    replicate = config.fsdp_replicate_degree
    shard = config.fsdp_shard_degree or world_size // replicate
    return replicate, shard


def build_mesh(config: ResolvedConfig, device_type: str, world_size: int) -> Any:
    """The device mesh ``fully_shard`` shards over (2-D ``(dp_replicate, dp_shard)`` for HSDP)."""
    from torch.distributed.device_mesh import init_device_mesh

    replicate, shard = mesh_shape(config, world_size)
    if replicate > 1:
        return init_device_mesh(device_type, (replicate, shard), mesh_dim_names=("dp_replicate", "dp_shard"))
    return init_device_mesh(device_type, (shard,), mesh_dim_names=("dp_shard",))


def world_layout(config: ResolvedConfig, world_size: int, device: str) -> str:
    """One summary line: how the processes split into model copies and shards."""
    if not config.fsdp_enable:
        return f"{world_size} process(es) on {device}, data parallel (a full model copy per process)"
    replicate, shard = mesh_shape(config, world_size)
    kind = "HSDP" if replicate > 1 else "FSDP2"
    extras = [f"reshard after forward {'on' if config.fsdp_reshard_after_forward else 'off'}"]
    if config.fsdp_offload_params:
        extras.append("shards offloaded to CPU")
    if config.fsdp_activation_checkpointing:
        extras.append("activation checkpointing per block")
    if config.fsdp_cpu_ram_efficient_loading:
        extras.append("rank 0 reads the weights")
    return (f"{kind}: {world_size} processes on {device} = {replicate} model cop{'y' if replicate == 1 else 'ies'} "
            f"x {shard} shards ({', '.join(extras)})")


def block_classes(config: ResolvedConfig, family: ModelFamily) -> tuple[str, ...]:
    return tuple(config.fsdp_transformer_layer_cls_to_wrap or family.traits.repeated_block_classes)


def mixed_precision_policy(config: ResolvedConfig) -> Any:
    """bf16 compute (parameters gathered in bf16), gradients reduced in fp32; fp32 masters stay sharded."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if config.mixed_precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if config.mixed_precision == "fp16":
        return MixedPrecisionPolicy(param_dtype=torch.float16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_model(bundle: ModelBundle, config: ResolvedConfig, family: ModelFamily, accelerator: Any) -> Any:
    """Shard ``bundle.model`` in place (each repeated block, then the root) and return it.

    With ``fsdp_cpu_ram_efficient_loading`` the model is moved to the meta device first and rank 0's
    weights are broadcast into the shards (other ranks loaded it empty). Plugin-owned trainables stay
    unsharded, on the accelerator; their gradients are averaged by ``accelerator.reduce`` in the loop.
    """
    import torch
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    model = bundle.model
    wanted = block_classes(config, family)
    blocks = [m for m in model.modules() if type(m).__name__ in wanted]
    if not blocks:
        from vtrain.errors import ConfigError, Problem

        found = sorted({type(m).__name__ for m in model.modules()})[:12]
        raise ConfigError([Problem("fsdp_transformer_layer_cls_to_wrap", f"no module of class {list(wanted)} in the "
                                   f"{family.name} model (classes include {found})", "name the model's block class")])
    if config.mixed_precision != "no":
        # FSDP2 needs one original dtype for the trainable parameters of a group: fp32 masters, as accelerate keeps
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.to(torch.float32)
    units = list(blocks)  # what fully_shard gets: each block, or its checkpoint wrapper
    if config.fsdp_activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for name, module in list(model.named_modules()):
            if module in blocks:
                wrapper = checkpoint_wrapper(module, preserve_rng_state=False)
                model.set_submodule(name, wrapper)
                units[units.index(module)] = wrapper
    mesh = build_mesh(config, accelerator.device.type, accelerator.num_processes)
    # pinned host memory speeds the copies to a GPU (and needs one)
    offload = (CPUOffloadPolicy(pin_memory=accelerator.device.type == "cuda") if config.fsdp_offload_params
               else OffloadPolicy())
    kwargs = {"mesh": mesh, "reshard_after_forward": config.fsdp_reshard_after_forward,
              "mp_policy": mixed_precision_policy(config), "offload_policy": offload}
    efficient = config.fsdp_cpu_ram_efficient_loading
    if efficient:
        from accelerate.utils.modeling import get_non_persistent_buffers

        full_state = model.state_dict() if accelerator.is_main_process else {}
        kept = get_non_persistent_buffers(model, recurse=True, fqns=True)
        buffers = {k: v.clone() for k, v in model.named_buffers() if k in kept and v.device.type != "meta"}
        model.to(torch.device("meta"))
    for unit in units:
        fully_shard(unit, **kwargs)
    fully_shard(model, **{k: v for k, v in kwargs.items() if k != "reshard_after_forward"})
    if efficient:
        from accelerate.utils.fsdp_utils import fsdp2_load_full_state_dict

        fsdp2_load_full_state_dict(accelerator, model, full_state, cpu_offload=config.fsdp_offload_params)
        for fqn, tensor in buffers.items():
            parent, _, leaf = fqn.rpartition(".")
            model.get_submodule(parent).register_buffer(leaf, tensor.to(accelerator.device), persistent=False)
    elif not config.fsdp_offload_params:
        model.to(accelerator.device)  # only the shards: fully_shard already replaced the parameters
    for module in bundle.extra_trainables.values():
        module.to(accelerator.device)
    return model


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def set_gradient_sync(model: Any, sync: bool) -> None:
    """Whether this backward reduce-scatters (and, with HSDP, all-reduces) the sharded gradients.

    accelerate's ``accumulate`` skips the gradient sync of all micro-batches but the last through the
    wrapper's ``no_sync``, which an FSDP2 module does not have: without this every micro-batch would
    reduce-scatter. Unsynced micro-batches keep unsharded gradients until the last one reduces their sum.
    """
    if is_sharded(model):
        model.set_requires_gradient_sync(sync, recurse=True)


def local_fraction(model: Any) -> float:
    """Elements this rank holds of the model's parameters (DTensor local shards) / all elements."""
    from torch.distributed.tensor import DTensor

    local = total = 0
    for param in model.parameters():
        total += param.numel()
        local += param.to_local().numel() if isinstance(param, DTensor) else param.numel()
    return local / max(total, 1)


def clip_grad_norm(accelerator: Any, params: list[Any], max_norm: float) -> float:
    """Clip by the global norm over every shard and every plain (plugin-owned) gradient, through
    accelerate's DTensor-aware clipping; returns the norm before clipping."""
    norm = accelerator.clip_grad_norm_(params, max_norm)
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)


@contextlib.contextmanager
def consolidated(model: Any) -> Iterator[bool]:
    """Every rank takes part; inside, rank 0's model holds full, unsharded CPU parameters in their
    original dtype (``get_model_state_dict`` with ``full_state_dict``), so a family's ``save_model``
    reads them as from an unsharded model; yields whether this rank holds them (rank 0 only: the
    others hold nothing extra). The sharded parameters are put back afterwards."""
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    owners = {}
    for module_name, module in model.named_modules():
        for leaf, param in module._parameters.items():
            if param is not None:
                fqn = f"{module_name}.{leaf}" if module_name else leaf
                owners[fqn.replace("_checkpoint_wrapped_module.", "")] = (module, leaf)
    swapped: list[tuple[Any, str, Any]] = []
    # fully_shard gives each sharded module a class FSDP<Name>(FSDPModule, <Name>); savers that record the
    # class name (diffusers' config.json) must see the model's own class
    classes = [(m, type(m)) for m in model.modules() if isinstance(m, FSDPModule)] if full else []
    try:
        for module, cls in classes:
            module.__class__ = cls.__bases__[-1]
        for fqn, tensor in full.items():
            if fqn not in owners:
                continue
            module, leaf = owners[fqn]
            old = module._parameters[leaf]
            swapped.append((module, leaf, old))
            module._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=old.requires_grad)
        yield bool(full)
    finally:
        for module, leaf, old in swapped:
            module._parameters[leaf] = old
        for module, cls in classes:
            module.__class__ = cls


def save_consolidated(family: ModelFamily, bundle: ModelBundle, config: ResolvedConfig, output_dir: Path) -> list[Path]:
    """The family's ``save_model`` on rank 0 over consolidated weights (every rank must call this)."""
    with consolidated(bundle.model) as holder:
        return family.save_model(bundle, config, output_dir) if holder else []


@contextlib.contextmanager
def _scratch(config: ResolvedConfig, rank: int) -> Iterator[tuple[ResolvedConfig, Path]]:
    """A throw-away output folder (and a config pointing at it) for ranks > 0, which run the same
    forward passes as rank 0 but whose media and files are not wanted."""
    from vtrain.config import ResolvedConfig

    folder = Path(tempfile.mkdtemp(prefix=f"vtrain-rank{rank}-"))
    try:
        yield ResolvedConfig({**config.values, "output_dir": str(folder)}, dict(config.sources)), folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def validate_sharded(run: RunContext, step: int, prompts: Mapping[str, str]) -> list[Artifact]:
    """Validation of a sharded model: every rank runs the same sampling (each block is gathered for
    its forward and freed again, so no rank holds a second full copy); only rank 0's media are kept."""
    acc = run.accelerator
    if acc.is_main_process:
        return run.hooks.validate(run.bundle, run.config, step, prompts)
    with _scratch(run.config, acc.process_index) as (config, _folder):
        run.hooks.validate(run.bundle, config, step, prompts)
    return []
