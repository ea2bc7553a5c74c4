"""vtrain-crepa: cross-frame representation alignment (arXiv 2506.09229) as a loss wrapper.

The plugin knows no model family. It needs the family to offer
:class:`vtrain.family.HiddenStateCapture` (with ``hidden_state_width``) and
:class:`vtrain.family.LatentDecoder`; CREPA enabled with a family lacking them is a configure-time
error. Hooks, in run order:

- ``load_model`` (wrapper): remembers the family and the settings in ``bundle.meta["crepa"]``;
- ``add_adapters`` (wrapper): after the adapters, loads the frozen DINOv2 encoder and adds the
  LayerNorm + Linear projection head to ``bundle.extra_trainables["crepa_head"]`` (optimised and
  checkpointed by the core, written beside the adapter as ``crepa_head.safetensors``);
- ``on_run_start``: with ``crepa_drop_vae_encoder``, frees the VAE encoder once the caches exist;
- ``compute_loss`` (wrapper): captures block ``crepa_block_index`` around the family's forward, then
  adds the ``crepa`` term and logs ``crepa_alignment`` and ``crepa_weight``.

Module-level imports stay light: torch and transformers are imported inside the hooks.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from vtrain.hookspecs import hookimpl

CATEGORY = "crepa"


@hookimpl
def add_options(registry: Any) -> None:
    common = {"category": CATEGORY}
    registry.add("crepa_enabled", "bool", False, "Add the CREPA cross-frame alignment loss (arXiv 2506.09229).",
                 **common)
    registry.add("crepa_block_index", "int", 8, "Transformer block whose hidden states are aligned (0-based).",
                 minimum=0, **common)
    registry.add("crepa_lambda", "float", 0.5, "Weight of the CREPA term (at the start, after any warm-up).",
                 minimum=0.0, **common)
    registry.add("crepa_lambda_end", "float", None,
                 "Weight reached at crepa_cutoff_step (or the last step), linearly from crepa_lambda; unset: constant.",
                 minimum=0.0, **common)
    registry.add("crepa_warmup_steps", "int", 0, "Steps over which the CREPA weight rises linearly from 0.",
                 minimum=0, **common)
    registry.add("crepa_cutoff_step", "int", 0, "From this step on CREPA is off (no capture, no encoder); 0: never.",
                 minimum=0, **common)
    registry.add("crepa_adjacent_distance", "int", 1, "Neighbouring frames on each side that are aligned too.",
                 minimum=0, **common)
    registry.add("crepa_adjacent_tau", "float", 1.0, "Temporal decay of the neighbour weights, exp(-k/tau).",
                 minimum=1e-6, **common)
    registry.add("crepa_encoder", "str", "dinov2_vitg14",
                 "Frozen vision encoder: dinov2_vitg14 (default), dinov2_vitl14, dinov2_vitb14, dinov2_vits14 "
                 "(light), a hub id, or a local folder holding a transformers Dinov2Model.", **common)
    registry.add("crepa_encoder_image_size", "int", 518,
                 "Frames are resized to this square size for the encoder (224 when crepa_encoder is dinov2_vits14 "
                 "and this is not set).", minimum=1, **common)
    registry.add("crepa_frame_pooling", "str", "mean",
                 "How the pixel frames behind one latent frame become its encoder features: mean (encode all, "
                 "average) or middle (encode the middle one: fewer encoder passes).", choices=("mean", "middle"),
                 **common)
    registry.add("crepa_drop_vae_encoder", "bool", False,
                 "Free the VAE encoder once the latent caches are built (train only from cached latents).", **common)
    registry.add("crepa_feature_cache_dir", "path", None,
                 "Cache the encoder targets of each training sample here (keyed by the sample's content, the encoder, "
                 "its size and the pooling), so later epochs skip the VAE decode and the encoder. Unset: no cache.",
                 **common)


@hookimpl
def validate_config(config: Any, family: Any, problems: Any) -> None:
    if not config.crepa_enabled:
        return
    from vtrain_crepa.encoder import ALIAS_PATCH_SIZE, ALIASES, image_size_for, is_valid_encoder_name

    missing = [name for name in ("capture_hidden_states", "hidden_state_width", "decode_latents")
               if not callable(getattr(family, name, None))]
    if missing:
        problems.add("crepa_enabled",
                     f"CREPA (plugin crepa) needs the model family to offer {', '.join(missing)} "
                     "(vtrain.family.HiddenStateCapture / LatentDecoder), and the "
                     f"{family.name!r} family does not",
                     f"set crepa_enabled=false, or use a family that captures hidden states (model_family={family.name})")
    if not is_valid_encoder_name(config.crepa_encoder):
        problems.add("crepa_encoder", f"{config.crepa_encoder!r} is neither a known encoder nor an existing folder "
                     "nor a hub id", f"use one of {', '.join(ALIASES)}, a hub id (org/name) or a local folder")
    size = image_size_for(config)
    if config.crepa_encoder in ALIASES and size % ALIAS_PATCH_SIZE:
        problems.add("crepa_encoder_image_size", f"{size} is not a multiple of DINOv2's patch size {ALIAS_PATCH_SIZE}",
                     f"use {size // ALIAS_PATCH_SIZE * ALIAS_PATCH_SIZE or ALIAS_PATCH_SIZE} (518 or 224 are usual)")
    if config.crepa_drop_vae_encoder and _validates_image_to_video(config, family):
        problems.add("crepa_drop_vae_encoder",
                     f"the {family.name!r} family validates image-to-video here (a video dataset trains i2v), and that "
                     "encodes the conditioning frame with the VAE encoder this option removes",
                     "set crepa_drop_vae_encoder=false, or set \"is_i2v\": false in every video dataset's video section")
    if config.crepa_cutoff_step and config.crepa_warmup_steps >= config.crepa_cutoff_step:
        problems.add("crepa_warmup_steps", f"the warm-up ({config.crepa_warmup_steps} steps) does not end before "
                     f"crepa_cutoff_step {config.crepa_cutoff_step}", "shorten the warm-up or move the cut-off later")


@hookimpl(wrapper=True)
def load_model(config: Any, family: Any) -> Generator[None, Any, Any]:
    bundle = yield
    if bundle is not None and config.crepa_enabled:
        from vtrain_crepa.runtime import META_KEY, CrepaRuntime
        from vtrain_crepa.schedule import WeightSchedule

        if config.crepa_drop_vae_encoder:
            from vtrain_crepa.vae import vae_with_encoder

            vae_with_encoder(bundle, family.name)  # fail now, before caching, when there is nothing to drop
        _check_block_index(bundle, family, config.crepa_block_index)
        bundle.meta[META_KEY] = CrepaRuntime(
            family=family, block_index=config.crepa_block_index, distance=config.crepa_adjacent_distance,
            tau=config.crepa_adjacent_tau, pooling=config.crepa_frame_pooling,
            schedule=WeightSchedule.from_config(config))
    return bundle


@hookimpl(wrapper=True)
def add_adapters(bundle: Any, config: Any) -> Generator[None, Any, Any]:
    result = yield
    runtime = _runtime(bundle, config)
    if runtime is not None:
        from accelerate import PartialState

        from vtrain_crepa.encoder import FrameEncoder, image_size_for
        from vtrain_crepa.runtime import HEAD_KEY, build_head

        device = PartialState().device
        runtime.encoder = FrameEncoder.load(config.crepa_encoder, image_size_for(config), device,
                                            _encoder_dtype(config, device))
        width = int(runtime.family.hidden_state_width(bundle, config.crepa_block_index))
        bundle.extra_trainables[HEAD_KEY] = build_head(width, runtime.encoder.width).to(device)
        if config.crepa_feature_cache_dir:
            from vtrain_crepa.encoder import encoder_source
            from vtrain_crepa.feature_cache import FeatureCache

            runtime.feature_cache = FeatureCache(config.crepa_feature_cache_dir, {
                "encoder": encoder_source(config.crepa_encoder), "image_size": image_size_for(config),
                "pooling": config.crepa_frame_pooling, "family": runtime.family.name})
    return result


@hookimpl
def on_run_start(run: Any) -> None:
    config, bundle = run.config, run.bundle
    if bundle is None or _runtime(bundle, config) is None or not config.crepa_drop_vae_encoder:
        return
    from vtrain_crepa.vae import drop_vae_encoder

    freed = drop_vae_encoder(bundle, run.family.name)
    if run.is_main_process:
        print(f"CREPA: VAE encoder dropped ({freed / 1e6:.1f}M parameters freed)", flush=True)


@hookimpl(wrapper=True)
def compute_loss(bundle: Any, batch: dict[str, Any], config: Any, state: Any) -> Generator[None, Any, Any]:
    runtime = _runtime(bundle, config)
    if runtime is None:
        return (yield)
    step, total = (state.step, state.max_steps) if state is not None else (0, 0)
    weight = runtime.schedule.weight(step, total)
    if weight <= 0.0:
        return (yield)
    with runtime.family.capture_hidden_states(bundle, runtime.block_index) as captured:
        out = yield
    hidden = captured.hidden_states
    if hidden is None:
        raise RuntimeError(f"CREPA: the {runtime.family.name!r} family's capture_hidden_states captured nothing "
                           f"for block {runtime.block_index} during compute_loss")
    term = runtime.term(bundle, batch, hidden, getattr(captured, "grid", None))
    out.add_term("crepa", weight * term.loss)
    out.metrics["crepa_alignment"] = term.alignment
    out.metrics["crepa_weight"] = weight
    return out


@hookimpl
def describe_run(run: Any) -> list[str] | None:
    config = run.config
    if not config.crepa_enabled:
        return None
    from vtrain_crepa.encoder import encoder_source, image_size_for

    schedule = f"lambda {config.crepa_lambda}"
    if config.crepa_lambda_end is not None:
        schedule += f" -> {config.crepa_lambda_end}"
    if config.crepa_warmup_steps:
        schedule += f", warm-up {config.crepa_warmup_steps} steps"
    if config.crepa_cutoff_step:
        schedule += f", off from step {config.crepa_cutoff_step}"
    return [f"CREPA: block {config.crepa_block_index}, {schedule}, neighbours d={config.crepa_adjacent_distance} "
            f"tau={config.crepa_adjacent_tau}, encoder {encoder_source(config.crepa_encoder)} at "
            f"{image_size_for(config)} px ({config.crepa_frame_pooling} frame pooling)"
            + (", VAE encoder dropped" if config.crepa_drop_vae_encoder else "")]


# -- helpers -----------------------------------------------------------------------------------


def _validates_image_to_video(config: Any, family: Any) -> bool:
    """Whether validation will render image-to-video: there are prompts, and some video dataset trains i2v
    (its ``video.is_i2v``, or the family's default when unset), and validation is not switched off."""
    if getattr(config, "validation_disable", False):
        return False
    if not (config.validation_prompt or config.user_prompt_library or config.validation_prompt_library):
        return False
    if not config.data_backend_config:
        return bool(family.traits.i2v_default)
    from vtrain.data.spec import parse_backends
    from vtrain.errors import ConfigError

    try:
        plan = parse_backends(config.data_backend_config, config)
    except ConfigError:
        return False  # the data layer reports its own problems
    flags = [backend.video.is_i2v for backend in plan.media if backend.is_video and backend.video is not None]
    return any(family.traits.i2v_default if flag is None else flag for flag in flags)


def _runtime(bundle: Any, config: Any) -> Any:
    from vtrain_crepa.runtime import META_KEY

    if not config.crepa_enabled:
        return None
    return bundle.meta.get(META_KEY)


def _check_block_index(bundle: Any, family: Any, block_index: int) -> None:
    """Enter the family's capture once (no forward) so a block index the model lacks is a ConfigError that
    names crepa_block_index now, not a ValueError at the first training step (after the caches are built)."""
    from vtrain.errors import ConfigError, Problem

    try:
        with family.capture_hidden_states(bundle, block_index):
            pass
    except (ValueError, IndexError) as exc:
        raise ConfigError([Problem("crepa_block_index", f"CREPA (plugin crepa) cannot capture block {block_index} "
                                   f"of the {family.name!r} model: {exc}",
                                   "set crepa_block_index to a block the model has (0-based)")]) from exc


def _encoder_dtype(config: Any, device: Any) -> Any:
    import torch

    if getattr(device, "type", "cpu") == "cpu":
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.base_model_default_dtype, torch.float32)
