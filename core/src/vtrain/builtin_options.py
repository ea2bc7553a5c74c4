"""The core's own configuration keys (plugins declare theirs through ``add_options``)."""

from __future__ import annotations

from vtrain.fsdp_options import declare_fsdp_options
from vtrain.options import OptionsRegistry

# Upper bounds of sizes: far beyond what any machine trains, so a typo (an extra zero or three) is refused
# at validation instead of ending in an out-of-memory error minutes into the run.
MAX_LORA_RANK = 4096
MAX_BATCH = 1024
MAX_SIDE_PX = 16384
MAX_FRAMES = 4096

LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)



def declare_core_options(reg: OptionsRegistry) -> None:
    """Declare every key the core owns."""
    model = {"category": "model"}
    reg.add("model_family", "str", None, "The model family to train (an installed family plugin, e.g. ltxvideo).", **model)
    reg.add("model_type", "str", "lora", "Train an adapter (lora) or every weight (full).", choices=("lora", "full"), **model)
    reg.add("pretrained_model_name_or_path", "str", None,
            "Hub id or local folder of the base model, in the family's diffusers layout.", **model)
    reg.add("base_model_default_dtype", "str", None,
            "dtype the frozen base weights are loaded in; unset: bf16 on an accelerator, fp32 without one "
            "(bf16 matmuls run far slower than fp32 on most CPUs).", choices=("bf16", "fp16", "fp32"), **model)
    reg.add("lora_type", "str", "standard", "Adapter kind: standard (peft LoRA) or lycoris.",
            choices=("standard", "lycoris"), **model)
    reg.add("lora_rank", "int", 16, "LoRA rank.", minimum=1, maximum=MAX_LORA_RANK, **model)
    reg.add("lora_alpha", "float", None, "LoRA alpha; unset means equal to lora_rank (scale 1).", minimum=0, **model)
    reg.add("lora_dropout", "float", 0.0, "Dropout on the LoRA path (below 1: at 1 the adapter sees only zeros).",
            minimum=0, less_than=1, **model)
    reg.add("lycoris_config", "path", None, "JSON file with the LyCORIS algorithm and its settings (lora_type=lycoris).", **model)
    reg.add("gradient_checkpointing", "bool", False,
            "Recompute activations in the backward pass to save memory (the family applies it).", **model)
    reg.add("gradient_checkpointing_interval", "int", None,
            "Checkpoint only every Nth transformer block.", minimum=1, status="planned",
            planned_note="no family supports it yet (LTX-Video does not); use gradient_checkpointing", **model)

    run = {"category": "run"}
    reg.add("output_dir", "path", "output", "Where checkpoints, validation media and the final model go.", **run)
    reg.add("seed", "int", 42, "Seed for python, numpy and torch; each rank adds its index.", **run)
    reg.add("max_train_steps", "int", 0, "Optimizer updates to run; 0 means use num_train_epochs.", minimum=0, **run)
    reg.add("num_train_epochs", "int", 0,
            "Passes over the data; with max_train_steps also set, whichever ends first (see ignore_final_epochs).",
            minimum=0, **run)
    reg.add("ignore_final_epochs", "bool", False,
            "Let max_train_steps alone govern the run length: epoch counts never end it.", **run)
    reg.add("train_batch_size", "int", 1, "Samples per batch on each process.", minimum=1, maximum=MAX_BATCH, **run)
    reg.add("gradient_accumulation_steps", "int", 1, "Batches accumulated per optimizer update.", minimum=1,
            maximum=100_000, **run)
    reg.add("mixed_precision", "str", "bf16", "Autocast precision for the forward pass.", choices=("no", "fp16", "bf16"), **run)
    reg.add("max_grad_norm", "float", 2.0, "Gradient clipping threshold; 0 turns clipping off.", minimum=0, **run)
    reg.add("grad_clip_method", "str", "value",
            "value: clip each gradient element to +-max_grad_norm; norm: clip the global norm.",
            choices=("value", "norm"), **run)
    reg.add("checkpoint_step_interval", "int", 0,
            "Write a resumable checkpoint every N updates and after the last one "
            "(0: none; the final model is saved either way).", minimum=0, **run)
    reg.add("checkpoints_total_limit", "int", None, "Keep at most this many checkpoints (oldest removed first).",
            minimum=1, **run)
    reg.add("resume_from_checkpoint", "str", None,
            "latest (newest checkpoint in output_dir; a fresh output_dir starts from scratch) or a checkpoint path.", **run)
    reg.add("overwrite_output_dir", "bool", False,
            "Start afresh in an output_dir that holds an earlier run's outputs, deleting that run's checkpoints, "
            "metrics, run info, validation media and saved model (without it such a run is refused).", **run)
    reg.add("dataloader_num_workers", "int", 0, "Worker processes that read samples (0: the main process).",
            minimum=0, maximum=256, **run)

    opt = {"category": "optimizer"}
    reg.add("optimizer", "str", "adamw", "Optimizer name from the optimizer registry (see `vtrain plugins`).", **opt)
    reg.add("optimizer_config", "str", None,
            "Extra optimizer arguments: a JSON object or key=value pairs separated by commas.", **opt)
    reg.add("learning_rate", "float", 1e-4, "Peak learning rate.", greater_than=0, **opt)
    reg.add("adam_beta1", "float", 0.9, "First-moment decay of Adam-style optimizers.", minimum=0, less_than=1, **opt)
    reg.add("adam_beta2", "float", 0.999, "Second-moment decay of Adam-style optimizers.", minimum=0, less_than=1, **opt)
    reg.add("adam_weight_decay", "float", 1e-2, "Decoupled weight decay.", minimum=0, **opt)
    reg.add("adam_epsilon", "float", 1e-8, "Adam epsilon (0 divides by zero where a gradient is 0).", greater_than=0, **opt)
    reg.add("lr_scheduler", "str", "constant", "Learning-rate schedule (diffusers' names).", choices=LR_SCHEDULERS, **opt)
    reg.add("lr_warmup_steps", "int", 0,
            "Linear warm-up updates; larger than max_train_steps is legal (the warm-up never finishes).", minimum=0, **opt)
    reg.add("lr_num_cycles", "float", 1, "Cycles for cosine_with_restarts (and half-cycles for cosine).", greater_than=0, **opt)
    reg.add("lr_power", "float", 1.0, "Power of the polynomial schedule.", minimum=0, **opt)

    loss = {"category": "objective"}
    reg.add("flow_schedule_shift", "float", None,
            "Shift the training timesteps of flow-matching models: sigma' = s*sigma/(1+(s-1)*sigma). "
            "Unset: the family's default (see vtrain config show). Must be > 0: a shift of 0 makes every sigma 0.",
            greater_than=0, **loss)
    reg.add("flow_schedule_auto_shift", "bool", False,
            "Resolution-dependent shift computed from the number of latent tokens (bigger samples, bigger shift).", **loss)
    reg.add("flow_sigma_sampling", "str", "logit_norm", "How training sigmas are drawn before the shift.",
            choices=("logit_norm", "uniform"), **loss)
    reg.add("flow_logit_mean", "float", 0.0, "Mean of the logit-normal sigma distribution.", **loss)
    reg.add("flow_logit_std", "float", 1.0, "Standard deviation of the logit-normal sigma distribution (0 would train one sigma only).", greater_than=0, **loss)
    reg.add("use_masked_loss", "bool", False, "Weight the loss by a per-sample mask (where the family supports it).", **loss)

    val = {"category": "validation"}
    reg.add("validation_step_interval", "int", 0,
            "Validate every N updates (0: only at the end and, unless disable_benchmark, before the first update).",
            minimum=0, **val)
    reg.add("validation_prompt", "str", None, "The main validation prompt.", **val)
    reg.add("user_prompt_library", "path", None, "JSON file of nickname -> prompt; each nickname names its output file.", **val)
    reg.add("validation_prompt_library", "bool", False, "Also render the built-in set of varied prompts (a collapse check).",
            **val)
    reg.add("validation_negative_prompt", "str", "", "Negative prompt for classifier-free guidance.", **val)
    reg.add("validation_guidance", "float", 3.0, "Classifier-free guidance scale.", minimum=0, **val)
    reg.add("validation_num_inference_steps", "int", 25, "Sampling steps for validation.", minimum=1, maximum=10_000,
            **val)
    reg.add("validation_seed", "int", 42, "Seed for validation noise, so validations are comparable.", **val)
    reg.add("validation_resolution", "list", ["768x512"], "Comma-separated WIDTHxHEIGHT sizes to validate at.", **val)
    reg.add("validation_num_video_frames", "int", None, "Frames of validation videos (unset: the family's default).",
            minimum=1, maximum=MAX_FRAMES, **val)
    reg.add("validation_disable", "bool", False,
            "Turn validation off: no validation media at any step, even with validation prompts set.", **val)
    reg.add("validation_disable_unconditional", "bool", True,
            "Skip the unconditional sample (the empty prompt, file prefix 'unconditional') at each validation; "
            "false renders it too (SimpleTuner switches it off for the LTX families to save time, hence true).", **val)
    reg.add("disable_benchmark", "bool", False,
            "Skip rendering the validation prompts with the untrained model before the first update.", **val)

    data = {"category": "data"}
    reg.add("data_backend_config", "json", None,
            "Dataset definitions (SimpleTuner's multidatabackend.json): a path to the JSON file or an inline JSON list.",
            **data)
    reg.add("caption_dropout_probability", "float", 0.0, "Probability of training a sample on the empty prompt.",
            minimum=0, maximum=1, **data)
    reg.add("resolution", "float", None,
            "Default dataset resolution (see resolution_type; a dataset's own resolution wins).", greater_than=0, **data)
    reg.add("resolution_type", "str", None,
            "Default resolution type: pixel_area (sqrt of the area in px), pixel (shorter side) or area (megapixels).",
            choices=("pixel_area", "pixel", "area"), **data)
    reg.add("aspect_bucket_rounding", "int", None, "Decimal places of aspect-ratio bucket keys (default 2).",
            minimum=0, **data)
    reg.add("minimum_image_size", "float", None,
            "Skip inputs smaller than this (in the resolution_type unit); 0 or unset: no minimum.", minimum=0, **data)
    reg.add("maximum_image_size", "float", None,
            "Inputs larger than this are first shrunk to target_downsample_size.", greater_than=0, **data)
    reg.add("target_downsample_size", "float", None, "Size very large inputs are shrunk to before cropping.",
            greater_than=0, **data)
    reg.add("disable_bucket_pruning", "bool", False,
            "Keep buckets smaller than train_batch_size (padded with repeats) instead of dropping them.", **data)
    reg.add("vae_batch_size", "int", 4, "Samples per VAE call while caching latents.", minimum=1, maximum=MAX_BATCH,
            **data)
    reg.add("compress_disk_cache", "bool", False, "Compress cached latents and embeddings.", **data)
    reg.add("delete_problematic_images", "bool", False, "Delete files that were read but cannot be decoded (corrupt media) instead of skipping "
            "them; a file that cannot be read (permissions, I/O errors) is only ever skipped.", **data)
    reg.add("offload_during_startup", "bool", False,
            "While caches are built, keep only the encoder in use on the accelerator.", **data)

    declare_fsdp_options(reg)
