"""Validation videos with diffusers' ``LTXPipeline`` / ``LTXImageToVideoPipeline``.

The pipelines are assembled around the transformer being trained (``bundle.model``, adapter
active), so what is rendered is exactly the current weights. EMA seam: a plugin that wraps the
``validate`` hook may swap EMA weights into ``bundle.model`` in place before ``yield`` and set
``bundle.meta["validation_variant"] = "ema"``; the files then get an ``-ema`` suffix so both
renders of one step can sit side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain_ltxvideo.encoding import module_device

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.family import Artifact, ModelBundle

DEFAULT_FRAMES = 49  # about two seconds at 25 fps; validation_num_video_frames overrides it
REFERENCE_LATENT = "i2v_reference_latent"


def parse_resolution(text: str) -> tuple[int, int]:
    width, height = (int(part) for part in text.lower().split("x"))
    return width, height


def remember_reference(bundle: ModelBundle, dataset: Any) -> None:
    """Keep the first latent frame of the dataset's first image-to-video sample for i2v validation.

    Taken from the training dataset (cached latents), so a run validates the same way whether its
    caches were built now or reused.
    """
    for index in range(len(dataset)):
        sample = dataset[index]
        flag = sample.get("is_i2v")
        if "latents" in sample and (flag is None or bool(flag)):
            bundle.meta[REFERENCE_LATENT] = sample["latents"][:, :1].detach().cpu().clone()
            return


def mostly_text_to_video(config: ResolvedConfig) -> bool:
    """Whether most i2v-dataset samples train as text-to-video (probability below 0.5, and the first
    frame not always protected): validation then renders text-to-video, the LoRA's main use."""
    return not config.ltx_protect_first_frame and config.i2v_conditioning_probability < 0.5


def conditioning_image(bundle: ModelBundle, config: ResolvedConfig) -> Any | None:
    """The i2v validation image: the configured file; with ``validation_using_datasets`` the first frame of
    the first sample of ``eval_dataset_id`` (or of the training data); else the first frame of the first
    i2v training sample (its first latent frame decoded by the VAE), else None (text-to-video)."""
    from PIL import Image

    from vtrain_ltxvideo.decoding import decode_latents

    if config.validation_image:
        return Image.open(config.validation_image).convert("RGB")
    samples = bundle.meta.get("validation_samples") if config.get("validation_using_datasets") else None
    if samples and samples[0].get("latents") is not None:
        latent = samples[0]["latents"][:, :1]
    else:
        latent = bundle.meta.get(REFERENCE_LATENT)
        if latent is None or mostly_text_to_video(config):
            return None
    frame = decode_latents(bundle, latent[None].to(module_device(bundle.model)))[0, 0]  # (3, H, W) in [0, 1]
    array = (frame.permute(1, 2, 0).float().cpu().numpy() * 255).round().astype("uint8")
    return Image.fromarray(array)


def build_pipeline(bundle: ModelBundle, image: Any | None) -> Any:
    """The pipeline that uses the positions training used: LTXConditionPipeline (causal, 0.9.5+),
    else LTXImageToVideoPipeline / LTXPipeline."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXImageToVideoPipeline,
        LTXPipeline,
    )

    parts = bundle.components
    device = module_device(bundle.model)
    parts["vae"].to(device)
    parts["text_encoder"].to(device)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(bundle.noise_scheduler.config)
    if bundle.meta.get("temporal_positions") == "causal":
        cls = LTXConditionPipeline
        # it samples its own linear-quadratic sigma schedule and passes no mu (as with 0.9.5+ scheduler configs)
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(bundle.noise_scheduler.config, use_dynamic_shifting=False)
    else:
        cls = LTXImageToVideoPipeline if image is not None else LTXPipeline
    pipeline = cls(scheduler=scheduler, vae=parts["vae"], text_encoder=parts["text_encoder"],
                   tokenizer=parts["tokenizer"], transformer=bundle.model)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def decode_arguments(bundle: ModelBundle, config: ResolvedConfig) -> dict[str, Any]:
    """decode_timestep / decode_noise_scale for VAEs with timestep conditioning (0.9.1+); none otherwise."""
    if not bundle.components["vae"].config.get("timestep_conditioning", False):
        return {}
    return {"decode_timestep": config.validation_decode_timestep,
            "decode_noise_scale": config.validation_decode_noise_scale}


def guidance_scale(config: ResolvedConfig) -> float:
    """validation_guidance, except 1.0 for distilled bases when the config does not set it."""
    from vtrain_ltxvideo.loading import is_distilled

    if is_distilled(config) and not config.explicitly_set("validation_guidance"):
        return 1.0
    return float(config.validation_guidance)


def render_videos(bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str],
                  fps: int) -> list[Artifact]:
    """Render every prompt at every validation resolution; write ``<nickname>-<W>x<H>.mp4`` files."""
    import torch
    from diffusers.utils import export_to_video

    from vtrain.family import Artifact

    model = bundle.model
    folder = Path(config.output_dir) / "validation" / f"step-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    variant = bundle.meta.get("validation_variant")
    suffix = f"-{variant}" if variant else ""
    image = conditioning_image(bundle, config)
    pipeline = build_pipeline(bundle, image)
    frames = config.validation_num_video_frames or DEFAULT_FRAMES
    device = module_device(model)
    was_training = model.training
    model.eval()
    artifacts: list[Artifact] = []
    try:
        for nickname, prompt in prompts.items():
            for size in config.validation_resolution:
                width, height = parse_resolution(size)
                generator = torch.Generator(device=device).manual_seed(config.validation_seed)
                kwargs: dict[str, Any] = {"image": image} if image is not None else {}
                kwargs.update(decode_arguments(bundle, config))
                kwargs.update(preview_callback(bundle, f"{nickname}-{width}x{height}{suffix}", frames, height, width,
                                               config.validation_num_inference_steps))
                with torch.no_grad():
                    video = pipeline(prompt=prompt, negative_prompt=config.validation_negative_prompt or None,
                                     width=width, height=height, num_frames=frames, frame_rate=fps,
                                     num_inference_steps=config.validation_num_inference_steps,
                                     guidance_scale=guidance_scale(config), generator=generator,
                                     max_sequence_length=config.tokenizer_max_length, output_type="np",
                                     **kwargs).frames[0]
                path = folder / f"{nickname}-{width}x{height}{suffix}.mp4"
                export_to_video(list(video), str(path), fps=fps)
                artifacts.append(Artifact(path=path, kind="video", meta={
                    "prompt": prompt, "step": step, "width": width, "height": height, "frames": len(video),
                    "fps": fps, "mode": "i2v" if image is not None else "t2v", "variant": variant or "model"}))
    finally:
        model.train(was_training)
    return artifacts


def preview_callback(bundle: ModelBundle, name: str, frames: int, height: int, width: int,
                     steps: int) -> dict[str, Any]:
    """Pipeline keyword arguments that report each denoising step's latents for previews.

    The pipeline denoises packed, normalised latents ``(B, tokens, C)``; they are unpacked to
    ``(B, C, F', H', W')`` (the layout of the training latents) before being reported. Returns
    no arguments when nobody observes previews, so ordinary validation pays nothing.
    """
    from vtrain.services.preview import denoising_step, is_observed

    if not is_observed(bundle):
        return {}
    vae = bundle.components["vae"]
    grid = ((frames - 1) // vae.temporal_compression_ratio + 1, height // vae.spatial_compression_ratio,
            width // vae.spatial_compression_ratio)
    config = bundle.model.config

    def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        latents = tensors["latents"]
        unpacked = pipe._unpack_latents(latents, *grid, config.patch_size, config.patch_size_t)
        denoising_step(bundle, name, index, steps, unpacked)
        return {}

    return {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": ["latents"]}
