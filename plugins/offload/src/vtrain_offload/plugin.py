"""vtrain-offload: memory and speed settings of the model-preparation phases.

- ``place_model``: group offload of the denoiser's frozen block weights (diffusers' group-offloading
  hooks; RAM or a disk folder), taking over placement when enabled.
- ``optimize_model``: keeps trainable and non-block tensors resident, sets the attention backend and
  compiles each transformer block (regional ``torch.compile``).
- ``encode_batch`` / ``validate`` wrappers: model CPU offload (the VAE and text encoders return to
  the CPU after each use) and SageAttention for validation.
- ``build_dataset`` / ``validate`` wrappers: without any offload option the VAE and text encoders
  still return to the CPU once the caches are built and after each validation, when nothing needs
  them on the accelerator (the family moves them back when it encodes again).
- ``compute_loss`` wrapper: with group offload, gradient checkpointing's recompute runs each block to
  its end (no early stop), so the offload hook after the block runs in the backward pass too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelBundle, ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

log = logging.getLogger("vtrain.offload")
PLAN_META = "group_offload"
UNMASKED_META = "unmasked_attention"
# quantised weights whose inner tensors diffusers' group offload leaves behind (it moves param.data)
RAM_UNSAFE_SUFFIXES = ("-quanto", "-bnb")
SPEED_META = "speed"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
OPTION_KEYS = ("enable_group_offload", "group_offload_type", "group_offload_blocks_per_group",
               "group_offload_use_stream", "group_offload_to_disk_path", "enable_model_cpu_offload",
               "musubi_blocks_to_swap", "musubi_block_swap_device", "attention_mechanism", "torch_compile",
               "torch_compile_mode")


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare the offload, attention and compile keys (kept equal to the catalog entry)."""
    off = {"category": "offload"}
    registry.add("enable_group_offload", "bool", False,
                 "Keep the denoiser's frozen block weights on the CPU (or disk) and move each group of blocks to the "
                 "accelerator only for its forward.", **off)
    registry.add("group_offload_type", "str", "block_level",
                 "block_level: groups of whole transformer blocks; leaf_level: every layer on its own (least memory, slowest).",
                 choices=("block_level", "leaf_level"), **off)
    registry.add("group_offload_blocks_per_group", "int", 1, "Blocks moved together (block_level).", minimum=1, **off)
    registry.add("group_offload_use_stream", "bool", False,
                 "Overlap transfers with compute on a CUDA stream. It cannot take effect while training (group "
                 "offload needs gradient checkpointing, whose backward pass reloads the blocks in the reverse order "
                 "of the stream's prefetch), so true is accepted with a note and the offload runs without a stream "
                 "(SimpleTuner's LTX-2 quick-start sets it).", **off)
    registry.add("group_offload_to_disk_path", "path", None,
                 "Stage offloaded weights in safetensors files in this folder instead of RAM (slower, for < 64 GB RAM). "
                 "With several processes each uses its own subfolder rank-<index>.", **off)
    registry.add("musubi_blocks_to_swap", "int", 0,
                 "SimpleTuner's block swap: keep the frozen weights of the last N transformer blocks in CPU RAM and "
                 "bring each to the accelerator only for its forward (block-level group offload of those blocks, one "
                 "per group); the other blocks stay resident. 0: off. With enable_group_offload (every block) it has no "
                 "effect, and says so.",
                 minimum=0, **off)
    registry.add("musubi_block_swap_device", "str", "cpu",
                 "Where swapped blocks wait: cpu (the only place group offload keeps weights; "
                 "group_offload_to_disk_path stages them on disk instead).", choices=("cpu",), **off)
    registry.add("enable_model_cpu_offload", "bool", False,
                 "Keep the VAE and text encoders on the CPU; they visit the accelerator only while they encode or "
                 "validate. Without it they still return to the CPU after caching and after each validation. "
                 "Not together with enable_group_offload.", **off)
    speed = {"category": "speed"}
    registry.add("attention_mechanism", "str", "sdpa",
                 "Attention backend: sdpa (default), sageattention (CUDA; validation/inference only, it has no "
                 "backward pass), or a diffusers attention backend name (flash, _native_math, flex, xformers ...). "
                 "Kernels that refuse an attention mask (flash, sage) run on the self-attention layers only; "
                 "layers given a mask keep sdpa.",
                 **speed)
    registry.add("torch_compile", "bool", False,
                 "torch.compile each transformer block (regional compilation: quick to compile, most of the speed-up).",
                 **speed)
    registry.add("torch_compile_mode", "str", "default", "torch.compile mode for torch_compile.",
                 choices=COMPILE_MODES, **speed)


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """Impossible combinations, each with the reason and an alternative."""
    from vtrain_offload.speed import attention_problem, combination_problems

    swap = config.musubi_blocks_to_swap > 0
    if swap and config.enable_group_offload:
        from vtrain.vae_memory import note_once

        note_once(config, ["musubi_blocks_to_swap: accepted, no effect in vtrain: block swap is group offload of the "
                           "last blocks only, and enable_group_offload already offloads every block"])
    offloading = config.enable_group_offload or swap
    if config.enable_group_offload and config.enable_model_cpu_offload:
        problems.add("enable_model_cpu_offload", "enable_group_offload and enable_model_cpu_offload both decide where "
                     "the model's weights live and cannot be combined",
                     "use enable_group_offload alone (it saves more memory), or only enable_model_cpu_offload")
    if offloading and config.get("fsdp_enable"):
        problems.add("enable_group_offload", "group offload and FSDP both decide where the transformer's weights live: "
                     "group offload moves whole blocks between CPU and the accelerator with its own hooks, while FSDP "
                     "replaces every weight with a shard and gathers it with its own hooks, so neither would find the "
                     "weights where it left them", "with FSDP, save memory with fsdp_offload_params (FSDP's own CPU "
                     "offload of the shards) instead, or train without fsdp_enable")
    if offloading and config.model_type == "full":
        problems.add("enable_group_offload", "group offload moves frozen weights between devices, but model_type=full "
                     "trains every weight (the optimizer needs them on the accelerator)",
                     "use model_type=lora with group offload, or turn enable_group_offload off")
    if offloading and not config.gradient_checkpointing:
        problems.add("enable_group_offload", "group offload while training needs gradient_checkpointing: without "
                     "it the backward pass needs every block's weights at once, on the accelerator, and the offload "
                     "would have moved them away", "set gradient_checkpointing=true (each block is then reloaded and "
                     "recomputed in the backward pass)")
    if config.group_offload_use_stream:
        from vtrain.vae_memory import note_once

        note_once(config, ["group_offload_use_stream: accepted, no effect in vtrain: group offload needs "
                           "gradient_checkpointing while training, and its backward pass reloads the blocks last to "
                           "first, out of the order a stream prefetches them; the offload runs without a stream"])
    precision = config.get("base_model_precision", "no_change")
    if offloading and config.group_offload_to_disk_path and precision != "no_change":
        problems.add("group_offload_to_disk_path", f"quantised weights ({precision}) are tensor subclasses that "
                     "safetensors cannot write to disk",
                     "leave group_offload_to_disk_path unset (offload to RAM), or use base_model_precision=no_change")
    elif offloading and precision.endswith(RAM_UNSAFE_SUFFIXES):
        problems.add("enable_group_offload", f"{precision} weights keep their payload and scales in inner tensors "
                     "that diffusers' group offload does not move (it reassigns param.data), so the accelerator's "
                     "kernels would read CPU memory", "use nf4-torchao, int8-torchao or fp8-torchao (moved whole) "
                     "with group offload, or turn enable_group_offload off")
    if config.torch_compile and config.enable_group_offload and config.group_offload_type == "leaf_level":
        problems.add("torch_compile", "leaf_level group offload runs a hook around every layer, which splits each "
                     "compiled block into many graphs", "use group_offload_type=block_level with torch_compile")
    problem = attention_problem(config.attention_mechanism)
    if problem:
        problems.add("attention_mechanism", *problem)
        return
    for reason, fix in combination_problems(config.attention_mechanism, tuple(family.traits.unmasked_attention),
                                            family.name, config.mixed_precision, config.base_model_default_dtype):
        problems.add("attention_mechanism", reason, fix)


@hookimpl(wrapper=True)
def load_model(config: ResolvedConfig, family: ModelFamily) -> Any:
    """Remember which attention layers the family declares mask-free (read in ``optimize_model``)."""
    bundle = yield
    if bundle is not None:
        bundle.meta.setdefault(UNMASKED_META, tuple(family.traits.unmasked_attention))
    return bundle


@hookimpl
def place_model(bundle: ModelBundle, config: ResolvedConfig, device: Any) -> bool | None:
    """With ``enable_group_offload``: install the group-offloading hooks and take over placement."""
    swap = config.musubi_blocks_to_swap
    if not config.enable_group_offload and not swap:
        return None
    import torch

    from vtrain_offload import group

    device = torch.device(device)
    if swap and not config.enable_group_offload:  # block swap: block-level offload of the last N blocks, one block per group
        plan = group.apply(bundle.model, device, "block_level", 1, False,
                           rank_folder(config.group_offload_to_disk_path), last_blocks=swap)
    else:
        plan = group.apply(bundle.model, device, config.group_offload_type, config.group_offload_blocks_per_group,
                           False, rank_folder(config.group_offload_to_disk_path))
    for module in bundle.extra_trainables.values():
        module.to(device)
    bundle.meta[PLAN_META] = plan
    return True


@hookimpl
def optimize_model(bundle: ModelBundle, config: ResolvedConfig) -> None:
    """After the adapters: settle group offload, then attention backend, then regional compile."""
    import torch

    from vtrain_offload import group, speed

    report: dict[str, Any] = {}
    plan = bundle.meta.get(PLAN_META)
    if plan is not None:
        device = torch.device(plan.onload_device)
        offloaded, resident = group.keep_resident(bundle.model, device)
        for module in bundle.extra_trainables.values():  # adapters built after placement (LyCORIS)
            module.to(device)
        report["group_offload"] = (offloaded, resident)
    layers = speed.set_training_backend(bundle.model, config.attention_mechanism, bundle.meta.get(UNMASKED_META, ()))
    if layers:
        report["attention"] = (config.attention_mechanism, layers, len(speed.attention_modules(bundle.model)))
    if config.torch_compile:
        report["compiled_blocks"] = speed.compile_blocks(bundle.model, config.torch_compile_mode)
    bundle.meta[SPEED_META] = report


@hookimpl(wrapper=True)
def encode_batch(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> Any:
    """Model CPU offload: the encoders go back to the CPU after encoding."""
    result = yield
    if config.enable_model_cpu_offload:
        return_components_to_cpu(bundle)
    return result


@hookimpl(wrapper=True)
def compute_loss(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: Any) -> Any:
    """Group offload: the forward runs with checkpoint early stop off, so each block's recompute in the
    backward pass reaches diffusers' offload hook. Model CPU offload: a component the loss used on the
    accelerator (CREPA decodes clean latents with the VAE) goes back to the CPU; nothing moves when every
    component is already there."""
    from contextlib import nullcontext

    context = nullcontext()
    if bundle.meta.get(PLAN_META) is not None:
        from vtrain_offload.group import full_recompute

        context = full_recompute()
    with context:
        result = yield
    if config.enable_model_cpu_offload and _components_off_cpu(bundle):
        return_components_to_cpu(bundle)
    return result


def _components_off_cpu(bundle: ModelBundle) -> bool:
    """Whether a component is off the CPU. Runs after every loss with model CPU offload, so it reads the first
    parameter of each component (components move whole, ``module.to``): a walk over every parameter of a 12B text
    encoder each step would cost milliseconds."""
    import torch

    for component in bundle.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        first = next(component.parameters(), None)
        if first is not None and first.device.type != "cpu":
            return True
    return False


@hookimpl(wrapper=True)
def build_dataset(bundle: ModelBundle, config: ResolvedConfig, family: ModelFamily) -> Any:
    """The caches are built: the encoders leave the accelerator (uncached data moves them back when it
    is encoded)."""
    result = yield
    if _components_off_cpu(bundle):
        return_components_to_cpu(bundle)
    return result


@hookimpl(wrapper=True)
def validate(bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str]) -> Any:
    """SageAttention on the mask-free attention layers while validating (when chosen); the encoders
    return to the CPU afterwards."""
    from contextlib import nullcontext

    from vtrain_offload.speed import inference_backend

    context: Any = nullcontext()
    if config.attention_mechanism == "sageattention":
        context = inference_backend(bundle.model, "sageattention", bundle.meta.get(UNMASKED_META, ()))
    try:
        with context:
            result = yield
    finally:
        if config.enable_model_cpu_offload or _components_off_cpu(bundle):
            return_components_to_cpu(bundle)
    return result


def rank_folder(disk_path: str | None) -> str | None:
    """The disk-offload folder of this process: ``disk_path`` itself, or ``disk_path/rank-<index>`` when
    several processes train (each clears and writes its own files)."""
    if not disk_path:
        return disk_path
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes <= 1:
        return disk_path
    from pathlib import Path

    return str(Path(disk_path) / f"rank-{state.process_index}")


def return_components_to_cpu(bundle: ModelBundle) -> list[str]:
    """Move every frozen component module (VAE, text encoders) of ``bundle`` to the CPU; return their names."""
    import torch

    moved = []
    for name, component in bundle.components.items():
        if isinstance(component, torch.nn.Module):
            component.to("cpu")
            moved.append(name)
    if moved and torch.cuda.is_available():
        torch.cuda.empty_cache()
    return moved


@hookimpl
def describe_run(run: RunContext) -> list[str] | None:
    config, bundle = run.config, run.bundle
    lines = []
    plan = bundle.meta.get(PLAN_META) if bundle is not None else None
    if plan is not None:
        where = f"disk ({plan.disk_path})" if plan.disk_path else "CPU RAM"
        size = f", {plan.blocks_per_group} block(s) per group" if plan.blocks_per_group else ""
        which = f" of the last {plan.last_blocks} blocks (block swap)" if plan.last_blocks else ""
        lines.append(f"group offload {plan.offload_type}{which}{size} to {where}, onload {plan.onload_device}, "
                     f"stream {'on' if plan.use_stream else 'off'}")
    if config.enable_model_cpu_offload:
        lines.append("model CPU offload: VAE and text encoders return to the CPU after each use")
    report = (bundle.meta.get(SPEED_META) if bundle is not None else None) or {}
    if config.attention_mechanism == "sageattention":
        lines.append("attention sageattention (validation only, on the mask-free attention layers)")
    elif "attention" in report:
        name, layers, total = report["attention"]
        lines.append(f"attention {name} on {layers} of {total} attention layers (sdpa where a mask is passed)"
                     if layers < total else f"attention {name} (training and validation)")
    if "compiled_blocks" in report:
        lines.append(f"torch.compile: {report['compiled_blocks']} blocks ({config.torch_compile_mode})")
    return lines or None
