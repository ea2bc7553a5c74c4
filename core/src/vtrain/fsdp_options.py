"""The sharded-training keys (FSDP2, HSDP) and the combinations they refuse.

SimpleTuner's key names. Only the standard library is imported here (the CLI reads options cheaply);
the sharding itself lives in :mod:`vtrain.training.sharding`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelFamily
    from vtrain.options import OptionsRegistry

FSDP_KEYS = ("fsdp_version", "fsdp_reshard_after_forward", "fsdp_cpu_ram_efficient_loading", "fsdp_offload_params",
             "fsdp_transformer_layer_cls_to_wrap", "fsdp_activation_checkpointing", "fsdp_shard_degree",
             "fsdp_replicate_degree")


def declare_fsdp_options(reg: OptionsRegistry) -> None:
    """Declare the ``fsdp_*`` keys."""
    cat = {"category": "distributed"}
    reg.add("fsdp_enable", "bool", False,
            "Shard weights, gradients and optimizer state across processes with PyTorch FSDP2 (fully_shard) "
            "instead of keeping a full copy per process (DDP). Needs 2+ processes (torchrun / accelerate launch).",
            **cat)
    reg.add("fsdp_version", "int", 2, "FSDP version: 2 (per-parameter DTensor sharding). 1 is refused.",
            choices=(1, 2), **cat)
    reg.add("fsdp_reshard_after_forward", "bool", True,
            "Free each block's gathered weights after its forward (gathered again in backward): less memory, "
            "one more all-gather per block.", **cat)
    reg.add("fsdp_cpu_ram_efficient_loading", "bool", False,
            "Only rank 0 reads the weights from disk; the other ranks build the model empty and receive their shards "
            "(peak host memory: one copy, not one per process). The family must support empty loading.", **cat)
    reg.add("fsdp_offload_params", "bool", False,
            "Keep the parameter shards, their gradients and the optimizer state in CPU memory (FSDP2 CPUOffloadPolicy).",
            **cat)
    reg.add("fsdp_transformer_layer_cls_to_wrap", "list", None,
            "Class names of the blocks sharded as one unit each (unset: the family's repeated block class).", **cat)
    reg.add("fsdp_activation_checkpointing", "bool", False,
            "Recompute each sharded block's activations in the backward pass (torch checkpoint_wrapper).", **cat)
    reg.add("fsdp_shard_degree", "int", None,
            "Processes one model copy is sharded across (HSDP: usually the GPUs of a node). Unset: all processes "
            "divided by fsdp_replicate_degree.", minimum=1, **cat)
    reg.add("context_parallel_size", "int", 1,
            "Processes that split one sample's sequence (context parallelism). Only 1 is supported; see "
            "docs/distributed.md.", minimum=1, **cat)
    reg.add("fsdp_replicate_degree", "int", 1,
            "Model copies (HSDP: usually the number of nodes); gradients are all-reduced between copies.",
            minimum=1, **cat)


def check_fsdp_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """The combinations sharded training cannot run, each with its reason and fix."""
    if config.context_parallel_size > 1:
        problems.add("context_parallel_size", "context parallelism is not supported: diffusers 0.42.1 has a "
                     "context-parallel plan for LTX-Video's transformer, but its Ulysses attention fails on it (the "
                     "text mask is expanded over all attention heads before the all-to-all leaves each process half "
                     "of them), its ring attention needs a CUDA-only kernel that returns the log-sum-exp, and "
                     "vtrain's data layer deals a different batch to every process while a context-parallel group "
                     "must share one", "set context_parallel_size=1; for long clips use "
                     "fsdp_activation_checkpointing (or gradient_checkpointing) with FSDP")
    if not config.fsdp_enable:
        for key in FSDP_KEYS:
            if config.explicitly_set(key):
                problems.add(key, "has no effect because fsdp_enable is false", "set fsdp_enable=true, or remove the key")
        return
    if config.fsdp_version == 1:
        problems.add("fsdp_version", "FSDP1 (flat-parameter wrapping) is deprecated in PyTorch and is not implemented: "
                     "vtrain shards with FSDP2, whose per-parameter DTensors LoRA, frozen weights and sharded "
                     "checkpoints need", "use fsdp_version=2")
    if config.max_grad_norm > 0 and config.grad_clip_method == "value":
        problems.add("grad_clip_method", "clipping by value is refused under FSDP: each process holds only its shard "
                     "of every gradient, so element-wise clipping would act on partial gradients before they are "
                     "reduced, unlike a single-GPU run (SimpleTuner refuses it too)",
                     "set grad_clip_method=norm (the global norm is computed across shards), or max_grad_norm=0")
    if not config.fsdp_transformer_layer_cls_to_wrap and not family.traits.repeated_block_classes:
        problems.add("fsdp_transformer_layer_cls_to_wrap", f"the {family.name!r} family names no repeated block class "
                     "to shard as a unit", "set fsdp_transformer_layer_cls_to_wrap to the block class name(s)")
    if config.fsdp_cpu_ram_efficient_loading and not family.traits.empty_weight_loading:
        problems.add("fsdp_cpu_ram_efficient_loading", f"the {family.name!r} family cannot build its model without "
                     "reading the weights, so every rank would read them anyway", "remove fsdp_cpu_ram_efficient_loading")
    world = launched_world_size()
    shard, replicate = config.fsdp_shard_degree, config.fsdp_replicate_degree
    if shard is not None and world > 1 and shard * replicate != world:
        problems.add("fsdp_shard_degree", f"fsdp_shard_degree ({shard}) x fsdp_replicate_degree ({replicate}) must "
                     f"equal the number of processes ({world})",
                     "leave fsdp_shard_degree unset (all processes / replicate degree), or change the launch")
    elif world > 1 and world % replicate:
        problems.add("fsdp_replicate_degree", f"{world} processes cannot be split into {replicate} equal model copies",
                     "choose a divisor of the number of processes")


def check_fsdp_launch(config: ResolvedConfig) -> None:
    """Refuse FSDP in a single process (raised before any model is loaded)."""
    from vtrain.errors import ConfigError, Problem

    if config.fsdp_enable and launched_world_size() < 2:
        raise ConfigError([Problem("fsdp_enable", "FSDP with one process shards nothing: the run would hold the "
                                   "whole model, as without FSDP, and pay for the collectives",
                                   "launch 2+ processes (torchrun --nproc_per_node N -m vtrain run ... or accelerate "
                                   "launch --num_processes N -m vtrain run ...), or set fsdp_enable=false")])
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        raise ConfigError([Problem("accelerate config", "the launcher's accelerate config enables accelerate's own FSDP "
                                   "(distributed_type: FSDP); vtrain applies FSDP2 itself from its fsdp_* keys",
                                   "use distributed_type: MULTI_GPU in the accelerate config and set fsdp_enable=true "
                                   "in vtrain's config (see examples/distributed/)")])


def launched_world_size() -> int:
    """Processes the launcher started (``WORLD_SIZE`` from torchrun / accelerate launch; 1 without one)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def reads_weights(config: ResolvedConfig) -> bool:
    """Whether this process reads the model's weights from disk (False on ranks > 0 with
    ``fsdp_cpu_ram_efficient_loading``: they build the model empty and receive their shards from rank 0)."""
    if not (config.get("fsdp_enable") and config.get("fsdp_cpu_ram_efficient_loading")):
        return True
    return int(os.environ.get("RANK", "0")) == 0

