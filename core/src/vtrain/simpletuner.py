"""How a SimpleTuner key that vtrain does not declare is read.

A SimpleTuner config may carry any of SimpleTuner's keys. Each one vtrain does not declare is
either read as the vtrain key it names under another name (:data:`ALIASES`), accepted and
reported as having no effect with the reason (:data:`NO_EFFECT`, or any SimpleTuner key left
at SimpleTuner's own default), or refused with the reason (:data:`REFUSED`, the keys of other
model families, and every other SimpleTuner key set to a non-default value). Only a key that
SimpleTuner does not know either is an "unknown key". ``docs/differences-from-simpletuner.md``
lists these keys (a test keeps it complete).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vtrain.simpletuner_keys import SIMPLETUNER_KEYS

#: SimpleTuner's legacy or alternative names -> the vtrain key they set.
ALIASES: dict[str, str] = {
    "validation_steps": "validation_step_interval",
    "checkpointing_steps": "checkpoint_step_interval",
    "save_total_limit": "checkpoints_total_limit",
    "optimizer_beta1": "adam_beta1",
    "optimizer_beta2": "adam_beta2",
    "flow_sigmoid_scale": "flow_logit_std",
}

_LAUNCHER = "a launcher setting: start vtrain with accelerate launch or torchrun, which set it"
_SPEED = "a speed or memory setting of SimpleTuner's own data pipeline; vtrain's results do not depend on it"
_DEBUG = "a debug-output switch; vtrain has its own progress and summary output"

#: SimpleTuner keys accepted whatever their value, because nothing that is trained or written depends on them here.
NO_EFFECT: dict[str, str] = {
    "logging_dir": "vtrain writes metrics.jsonl and run_info.json under output_dir, and tracker files where the tracker puts them",
    "vae_dtype": "the VAE runs in base_model_default_dtype (it is frozen; its latents are cached in fp32)",
    "framerate": "vtrain reads each clip's frame rate from the file (the family's default rate for still images)",
    # named (as a config key, default 25) in SimpleTuner's LTX-2 quick-start; its argument is framerate
    "frame_rate": "vtrain reads each clip's frame rate from the file (the family's default rate for still images)",
    "model_flavour": "this family has no flavours: vtrain loads the model named by pretrained_model_name_or_path "
                     "(in SimpleTuner a flavour only picks that path); families that have them (ltx2) declare the key",
    "seed_for_each_device": "vtrain always seeds each process with seed + its index (SimpleTuner's default, true)",
    "local_rank": _LAUNCHER, "machine_rank": _LAUNCHER, "main_process_ip": _LAUNCHER, "main_process_port": _LAUNCHER,
    "num_machines": _LAUNCHER, "num_processes": _LAUNCHER, "accelerate_config": _LAUNCHER,
    "accelerate_extra_args": _LAUNCHER, "same_network": _LAUNCHER,
    "dynamo_backend": "compilation is the offload plugin's torch_compile key",
    "dynamo_mode": "compilation is the offload plugin's torch_compile / torch_compile_mode keys",
    "dynamo_fullgraph": "compilation is the offload plugin's torch_compile key",
    "dynamo_dynamic": "compilation is the offload plugin's torch_compile key",
    "dynamo_use_regional_compilation": "compilation is the offload plugin's torch_compile key",
    "disable_tf32": "a numeric-speed switch of CUDA matmuls; vtrain leaves torch's setting as it is",
    "torch_num_threads": "vtrain leaves torch's thread count to OMP_NUM_THREADS",
    "set_grads_to_none": "vtrain always frees gradients after each update (zero_grad(set_to_none=True))",
    "print_filenames": _DEBUG, "print_sampler_statistics": _DEBUG, "debug_aspect_buckets": _DEBUG,
    "debug_dataset_loader": _DEBUG,
    "max_workers": _SPEED, "read_batch_size": _SPEED, "image_processing_batch_size": _SPEED,
    "aspect_bucket_worker_count": _SPEED, "enable_multiprocessing": _SPEED, "metadata_update_interval": _SPEED,
    "write_batch_size": _SPEED, "text_encoder_batch_size": _SPEED, "aws_max_pool_connections": _SPEED,
    "dataloader_prefetch": _SPEED, "dataloader_prefetch_qlen": _SPEED, "vae_cache_scan_behaviour": _SPEED,
    "vae_cache_ondemand": "vtrain always builds the latent cache before the first update",
    "text_cache_ondemand": "vtrain always builds the text-embedding cache before the first update",
    "skip_file_discovery": "vtrain scans new files and reuses cached metadata for known ones",
    "preserve_data_backend_cache": "vtrain keys its caches by content and settings, so they are reused when valid",
    "keep_vae_loaded": "a memory setting: vtrain keeps the frozen VAE on the CPU between uses",
    "fully_unload_text_encoder": "a memory setting: the text encoder is only used while caching",
    "delete_model_after_load": "a memory setting of SimpleTuner's loader",
    "offload_during_save": "a memory setting of SimpleTuner's save path",
    "accelerator_cache_clear_interval": "a memory setting; vtrain does not clear the allocator cache between steps",
    "checkpointing_use_tempdir": "vtrain writes every checkpoint to a temporary folder and renames it (always atomic)",
    "delete_invalid_checkpoints": "vtrain skips incomplete checkpoint folders when it resumes",
    "model_card_note": "the hub plugin writes its own model card",
    "model_card_private": "use the hub keys of vtrain (push_to_hub, hub_model_id) for visibility",
    "model_card_safe_for_work": "the hub plugin writes its own model card",
    "modelspec_comment": "vtrain writes no modelspec metadata",
    "push_to_hub_background": "uploads run when the run ends",
    "tracker_image_layout": "trackers receive validation media as files",
    "i_know_what_i_am_doing": "vtrain has no guard rails that this switch turns off",
    "disk_low_threshold": "vtrain does not watch free disk space",
    "disk_low_action": "vtrain does not watch free disk space",
    "disk_low_script": "vtrain does not watch free disk space",
    "sageattention_usage": "attention kernels are chosen with the offload plugin's attention_mechanism key",
    "training_scheduler_timestep_spacing": "flow-matching training draws continuous sigmas; there is no timestep grid",
    "inference_scheduler_timestep_spacing": "validation uses the pipeline's own flow-matching scheduler",
    "allow_dataset_oversubscription": "vtrain pads small buckets with repeats when disable_bucket_pruning is set",
    "aspect_bucket_disable_rebuild": "vtrain rebuilds bucket metadata only when the files or settings change",
    "aspect_bucket_alignment": "pixel sizes follow the model family's alignment (32 for LTX-Video), as SimpleTuner does for video",
    "webhook_reporting_interval": "the webhook service reports at its own events",
    "validation_seed_source": "validation noise is drawn on the accelerator from validation_seed",
    "validation_image_format": "validation videos are written as mp4",
    "validation_image_quality": "validation videos are written as mp4",
    "validation_multigpu": "validation runs on the main process",
    "override_dataset_config": "vtrain keys each cache by the dataset settings that shape it and rebuilds what "
                               "changed, so there is no stored dataset config to override",
}

_RAMTORCH = ("RamTorch is not part of vtrain; for CPU-resident transformer weights use enable_group_offload with "
             "group_offload_type leaf_level (each layer streamed from CPU RAM for its forward, as RamTorch does) or "
             "musubi_blocks_to_swap")
_SDNQ = "SDNQ quantisation is not part of vtrain; use base_model_precision int8-torchao, fp8-torchao or nf4-bnb"

#: SimpleTuner keys whose non-default values vtrain refuses, with the reason and the fix.
REFUSED: dict[str, str] = {
    "validation_on_startup": "vtrain validates before the first update unless disable_benchmark is true",
    "num_validation_images": "vtrain renders one video per prompt and resolution",
    "cache_dir_vae": "set cache_dir_vae in each dataset of data_backend_config",
    "cache_dir_text": "set cache_dir in the text_embeds dataset of data_backend_config",
    "cache_dir": "set the cache folders in data_backend_config",
    "caption_strategy": "set caption_strategy in each dataset of data_backend_config",
    "instance_prompt": "set instance_prompt in each dataset of data_backend_config",
    "strict_epoch_limit": "num_train_epochs already ends the run at an epoch boundary; use ignore_final_epochs for the opposite",
    "lora_format": "vtrain writes diffusers-format adapters (pytorch_lora_weights.safetensors), which ComfyUI also loads",
    "loss_type": "the LTX-Video objective is the flow-matching MSE (SimpleTuner's l2)",
    "prediction_type": "flow-matching families predict the velocity; the prediction type is fixed by the family",
    "t5_padding": "prompts are padded as the diffusers pipeline pads them (SimpleTuner's unmodified)",
    "train_text_encoder": "vtrain trains the denoiser only",
    "text_encoder_lr": "vtrain trains the denoiser only",
    "revision": "load a specific revision by downloading it to a folder and pointing pretrained_model_name_or_path there",
    "variant": "load a variant by downloading it to a folder and pointing pretrained_model_name_or_path there",
    "trust_remote_code": "vtrain loads diffusers and transformers classes only, never remote code",
    "use_dora": "use lora_type=lycoris with a DoRA-capable algorithm in lycoris_config",
    "flow_use_beta_schedule": "vtrain draws training sigmas logit-normally (flow_sigma_sampling) or uniformly",
    "flow_custom_timesteps": "vtrain draws training sigmas logit-normally (flow_sigma_sampling) or uniformly",
    "lr_end": "the polynomial schedule decays to 0 (diffusers' default end rate)",
    "checkpoint_epoch_interval": "use checkpoint_step_interval",
    "deepspeed_config": "vtrain trains with DDP through accelerate; DeepSpeed is not supported",
    "fsdp_enable": "vtrain trains with DDP through accelerate; FSDP is not supported",
    "validation_noise_scheduler": "validation uses the model's own flow-matching scheduler",
    "custom_tracker": "write a tracker plugin (see docs/writing-a-tracker.md)",
    # memory settings without an equivalent of the same name
    "ramtorch": _RAMTORCH, "ramtorch_target_modules": _RAMTORCH, "ramtorch_transformer_percent": _RAMTORCH,
    "ramtorch_disable_extensions": _RAMTORCH, "ramtorch_disable_sync_hooks": _RAMTORCH,
    "ramtorch_text_encoder": "the text encoder only runs while the text cache is built: quantise it for that with "
                             "text_encoder_1_precision; offload_during_startup keeps it off the accelerator otherwise",
    "ramtorch_text_encoder_percent": "see ramtorch_text_encoder: use text_encoder_1_precision",
    "ramtorch_vae": "bound the VAE's memory with vae_enable_tiling, vae_enable_slicing and vae_enable_patch_conv",
    "ramtorch_controlnet": "vtrain trains no ControlNet",
    "context_parallel_size": "vtrain has no context parallelism; save memory per GPU with fsdp_enable (FSDP2) or "
                             "group offload, and train data-parallel",
    "context_parallel_comm_strategy": "vtrain has no context parallelism (see context_parallel_size)",
    "sdnq_use_hadamard": _SDNQ, "sdnq_hadamard_group_size": _SDNQ, "sdnq_group_size": _SDNQ,
    "sdnq_compile_mode": _SDNQ, "sdnq_use_quantized_matmul": _SDNQ, "sdnq_weights_dtype": _SDNQ,
    "sdnq_quantized_matmul_dtype": _SDNQ,
}

#: SimpleTuner settings sections that belong to one model family. A family claims its own through
#: ``FamilyTraits.simpletuner_sections``; for every other family they are another family's settings.
OTHER_FAMILY_SECTIONS = ("ace_step", "cosmos3", "deepfloyd", "flux", "hidream", "ideogram", "krea2", "ltx",
                         "ltxvideo2", "minimaxh3", "minimaxmusic", "pixart", "sana", "sd3", "sdxl", "wan")


@dataclass(frozen=True)
class Verdict:
    """What to do with an undeclared key: ``alias`` (read as ``target``), ``notice`` (accepted, no
    effect: ``reason``), ``refuse`` (``reason`` and ``fix``), or ``unknown``."""

    kind: str
    reason: str = ""
    fix: str = ""
    target: str = ""
    value: Any = None


def _same(value: Any, default: Any) -> bool:
    """Whether ``value`` (as written in a config) equals SimpleTuner's default."""
    if value is None or value == default:
        return True
    if default is None:
        return isinstance(value, str) and value.strip().lower() in ("", "none", "null")
    text = str(value).strip().lower()
    if isinstance(default, bool):
        return text in (("true", "1", "yes") if default else ("false", "0", "no", ""))
    if isinstance(default, (int, float)):
        try:
            return float(text) == float(default)
        except ValueError:
            return False
    return text == str(default).strip().lower()


def classify(key: str, value: Any, own_sections: tuple[str, ...] = (),
             own_refusals: Mapping[str, str] | None = None) -> Verdict:
    """Read ``key`` (not a declared vtrain key) set to ``value`` as SimpleTuner would; ``own_sections`` are the
    SimpleTuner sections the selected family claims (their keys are not another family's), ``own_refusals`` its
    reasons for SimpleTuner keys it expresses differently (the family's ``simpletuner_refusals`` trait)."""
    if key in ALIASES:
        return Verdict("alias", target=ALIASES[key])
    if key == "flow_use_uniform_schedule":
        if _same(value, False):
            return Verdict("notice", reason="false keeps vtrain's default sigma sampling")
        return Verdict("alias", target="flow_sigma_sampling", value="uniform")
    if key in NO_EFFECT:
        return Verdict("notice", reason=NO_EFFECT[key])
    known = SIMPLETUNER_KEYS.get(key)
    if known is None:
        return Verdict("unknown")
    section, default = known
    if section in OTHER_FAMILY_SECTIONS and section not in own_sections:
        if _same(value, default):
            return Verdict("notice", reason=f"a setting of SimpleTuner's {section} models, left at its default")
        return Verdict("refuse", reason=f"a setting of SimpleTuner's {section} models; it does not apply to this family",
                       fix="remove the key")
    if _same(value, default):
        return Verdict("notice", reason=f"SimpleTuner's default value ({default!r}); vtrain has no such setting "
                                        "and behaves as that default does")
    fix = (own_refusals or {}).get(key) or REFUSED.get(key)
    if fix:
        return Verdict("refuse", reason=f"SimpleTuner's {key} is not implemented in vtrain", fix=fix)
    return Verdict("refuse", reason=f"SimpleTuner's {key} ({section} settings) is not implemented in vtrain, so a value "
                                    f"other than SimpleTuner's default ({default!r}) cannot be honoured",
                   fix="remove the key (see docs/differences-from-simpletuner.md)")
