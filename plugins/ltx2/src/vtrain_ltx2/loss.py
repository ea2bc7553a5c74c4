"""The LTX-2 objective: flow matching per generated modality, with per-modality modes and conditions.

Each modality (video, audio) is *generated* (noised with x_t = (1-σ)x0 + σε, the transformer's velocity
is regressed on ε - x0), *frozen* (fed clean with timestep and σ 0, out of the loss, still attended to
through the audio↔video cross attention) or *off* (not fed: a single zero token and
``isolate_modalities``, so the other stream trains alone). Conditions on the video stream keep tokens
clean with per-token timestep 0 and out of the loss, as diffusers' pipelines feed them at inference:
the first latent frame (image-to-video, ``LTX2ImageToVideoPipeline``), a prefix or suffix of latent
frames (video extension, ``LTX2ConditionPipeline``) and IC-LoRA reference tokens appended after the
video tokens with matched positions (``LTX2InContextPipeline``). One σ per sample serves both
modalities, drawn logit-normal and time-shifted like the pipeline's dynamic shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.family import LossOutput, ModelBundle, TrainState

TIMESTEP_SCALE = 1000.0
FIXED_AUDIO_NOISE_SEED = 20240102  # audio noise of evaluations that pass only ``noise`` (the evaluation loss)


@dataclass(frozen=True)
class Modes:
    """The per-batch modality modes after the data had its say (no audio in the batch: audio off)."""

    video: str
    audio: str

    @property
    def isolate(self) -> bool:
        return "off" in (self.video, self.audio)


def batch_modes(config: ResolvedConfig, batch: dict[str, Any]) -> Modes:
    video, audio = str(config.ltx2_video), str(config.ltx2_audio)
    if batch.get("audio_latents") is None:
        audio = "off"
    if batch.get("latents") is None:
        video = "off"
    if video == "off" and audio == "off":
        raise ValueError("this batch has neither video latents nor audio latents to train on (ltx2_video / ltx2_audio "
                         "are off, or the clips have no sound)")
    if "generated" not in (video, audio):
        raise ValueError(f"nothing to learn: ltx2_video={video}, ltx2_audio={audio} (set one to generated)")
    return Modes(video, audio)


def draw_sigmas(batch: dict[str, Any], size: int, shape: tuple[int, ...], config: ResolvedConfig, state: TrainState,
                shift_fallback: Any, device: Any) -> torch.Tensor:
    """``batch["sigmas"]`` as given, else logit-normal (or the configured sampler) and shifted."""
    import torch

    from vtrain.flow_matching import sample_sigmas, shift_sigmas

    if batch.get("sigmas") is not None:
        return batch["sigmas"].to(device, torch.float32).reshape(size)
    sigmas = sample_sigmas(size, config.flow_sigma_sampling, config.flow_logit_mean, config.flow_logit_std,
                           device=device)
    shift = state.shift_for(shape) if state is not None and state.shift_for else shift_fallback(config, shape)
    return shift_sigmas(sigmas, shift) if shift is not None else sigmas


def video_condition_mask(batch: dict[str, Any], x0: torch.Tensor, config: ResolvedConfig) -> torch.Tensor | None:
    """(B, F', H', W') float, 1 where a video latent is a clean condition (first frame, extension frames);
    None when no condition is configured (the common text-to-video step does no mask work)."""
    import torch

    size, frames = x0.shape[0], x0.shape[2]
    if (float(config.ltx2_i2v_probability) <= 0 or frames < 2) and int(config.ltx2_extension_frames) <= 0:
        return None
    mask = torch.zeros(size, frames, *x0.shape[3:], device=x0.device)
    probability = float(config.ltx2_i2v_probability)
    if probability > 0 and frames > 1:
        chosen = torch.rand(size, device=x0.device) < probability if probability < 1 else \
            torch.ones(size, dtype=torch.bool, device=x0.device)
        mask[chosen, 0] = 1.0
    extension = min(int(config.ltx2_extension_frames), frames - 1)
    if extension > 0:
        if config.ltx2_extension_from == "end":
            mask[:, frames - extension:] = 1.0
        else:
            mask[:, :extension] = 1.0
    return mask


def _fps(batch: dict[str, Any], default: float) -> float:
    fps = batch.get("fps")
    if fps is None:
        return default
    value = float(fps.reshape(-1)[0])
    return value if value > 0 else default


def build_forward(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState,
                  shift_fallback: Any, default_fps: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(transformer keyword arguments, what the loss needs: targets, masks, modes, sigmas)."""
    import torch
    from diffusers import LTX2Pipeline

    model = bundle.forward_model()
    transformer = bundle.model
    dtype = bundle.meta.get("compute_dtype") or next(transformer.parameters()).dtype
    modes = batch_modes(config, batch)
    text = batch["video_prompt_embeds"]
    device, size = text.device, text.shape[0]
    fps = _fps(batch, default_fps)

    if modes.video == "off":
        channels = int(transformer.config.in_channels)
        x0 = torch.zeros(size, channels, 1, 1, 1, device=device)
    else:
        x0 = batch["latents"].float().to(device)
    _, _, frames, height, width = x0.shape
    if modes.audio == "off":
        a0 = torch.zeros(size, 1, int(transformer.config.audio_in_channels), device=device)
    else:
        a0 = batch["audio_latents"].float().to(device)
    shape = tuple(x0.shape[1:]) if modes.video != "off" else tuple(a0.shape[1:])
    sigmas = draw_sigmas(batch, size, shape, config, state, shift_fallback, device)
    timestep = sigmas * float(bundle.noise_scheduler.config.get("num_train_timesteps", TIMESTEP_SCALE))
    zero = torch.zeros_like(timestep)

    # video stream
    noise = batch["noise"].to(device, x0.dtype) if batch.get("noise") is not None else torch.randn_like(x0)
    tokens = LTX2Pipeline._pack_latents(x0, 1, 1)
    if modes.video == "generated":
        frame_mask = video_condition_mask(batch, x0, config)
        condition = None if frame_mask is None else LTX2Pipeline._pack_latents(frame_mask[:, None], 1, 1).squeeze(-1)
        hidden = LTX2Pipeline._pack_latents((1 - sigmas.view(-1, 1, 1, 1, 1)) * x0 + sigmas.view(-1, 1, 1, 1, 1) * noise, 1, 1)
        video_t = timestep
        if condition is not None:
            hidden = hidden * (1 - condition[..., None]) + tokens * condition[..., None]
            video_t = timestep[:, None] * (1 - condition)
        video_sigma = timestep
    else:
        condition = torch.ones(tokens.shape[:2], device=device)
        hidden, video_t, video_sigma = tokens, torch.zeros(tokens.shape[:2], device=device), zero
    coords = transformer.rope.prepare_video_coords(size, frames, height, width, device, fps=fps)
    references = batch.get("reference_latents") if config.ltx2_ic_lora else None
    if references is not None and modes.video != "off":
        hidden, video_t, coords = _append_references(transformer, references.float().to(device), hidden, video_t,
                                                     coords, (frames, height, width), fps)

    # audio stream
    if batch.get("audio_noise") is not None:
        audio_noise = batch["audio_noise"].to(device, a0.dtype)
    elif batch.get("noise") is not None:  # a fixed-noise evaluation that only fixes the video noise: fix the audio's too
        audio_noise = torch.randn(a0.shape, generator=torch.Generator().manual_seed(FIXED_AUDIO_NOISE_SEED)).to(device)
    else:
        audio_noise = torch.randn_like(a0)
    if modes.audio == "generated":
        audio_hidden = (1 - sigmas.view(-1, 1, 1)) * a0 + sigmas.view(-1, 1, 1) * audio_noise
        audio_t = timestep
    else:
        audio_hidden, audio_t = a0, zero
    audio_frames = a0.shape[1]
    audio_coords = transformer.audio_rope.prepare_audio_coords(size, audio_frames, device)

    kwargs = dict(
        hidden_states=hidden.to(dtype), audio_hidden_states=audio_hidden.to(dtype),
        encoder_hidden_states=text.to(dtype), audio_encoder_hidden_states=batch["audio_prompt_embeds"].to(dtype),
        timestep=video_t, audio_timestep=audio_t, sigma=video_sigma, audio_sigma=audio_t,
        encoder_attention_mask=batch["prompt_attention_mask"], audio_encoder_attention_mask=batch["prompt_attention_mask"],
        num_frames=frames, height=height, width=width, fps=fps, audio_num_frames=audio_frames,
        video_coords=coords, audio_coords=audio_coords, isolate_modalities=modes.isolate,
        spatio_temporal_guidance_blocks=None, perturbation_mask=None, use_cross_timestep=True,
        attention_kwargs=None, return_dict=False)
    extras = dict(modes=modes, sigmas=sigmas, video_target=LTX2Pipeline._pack_latents(noise - x0, 1, 1),
                  video_weight=None if condition is None else 1 - condition, audio_target=audio_noise - a0, video_tokens=tokens.shape[1], model=model)
    return kwargs, extras


def _append_references(transformer: Any, references: torch.Tensor, hidden: torch.Tensor, video_t: torch.Tensor,
                       coords: torch.Tensor, grid: tuple[int, int, int], fps: float) -> tuple[Any, Any, Any]:
    """IC-LoRA: clean reference tokens after the video tokens, timestep 0, positions scaled to the target grid."""
    import torch
    from diffusers import LTX2Pipeline

    size, _, ref_frames, ref_height, ref_width = references.shape
    factor = grid[1] // ref_height
    if factor < 1 or grid[1] != ref_height * factor or grid[2] != ref_width * factor:
        raise ValueError(f"reference latents {ref_height}x{ref_width} must be the target's {grid[1]}x{grid[2]} divided by "
                         "a whole factor (the pipeline's reference_downscale_factor)")
    ref_tokens = LTX2Pipeline._pack_latents(references, 1, 1)
    ref_coords = transformer.rope.prepare_video_coords(size, ref_frames, ref_height, ref_width, hidden.device, fps=fps)
    if factor != 1:
        ref_coords[:, 1] = ref_coords[:, 1] * factor
        ref_coords[:, 2] = ref_coords[:, 2] * factor
    if video_t.dim() == 1:
        video_t = video_t[:, None].expand(-1, hidden.shape[1])
    ref_t = torch.zeros(size, ref_tokens.shape[1], device=hidden.device, dtype=video_t.dtype)
    return (torch.cat([hidden, ref_tokens.to(hidden.dtype)], dim=1), torch.cat([video_t, ref_t], dim=1),
            torch.cat([coords, ref_coords.to(coords.dtype)], dim=2))


def flow_matching_loss(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState,
                       shift_fallback: Any, default_fps: float) -> LossOutput:
    """Weighted sum of the generated modalities' flow-matching terms; both terms are logged."""

    from vtrain.family import LossOutput

    kwargs, extras = build_forward(bundle, batch, config, state, shift_fallback, default_fps)
    video_pred, audio_pred = extras["model"](**kwargs)
    modes: Modes = extras["modes"]
    terms: dict[str, torch.Tensor] = {}
    metrics: dict[str, float] = {"sigma_mean": float(extras["sigmas"].mean())}
    total: Any = 0.0  # at least one modality is generated (batch_modes), so total becomes a tensor
    if modes.video == "generated":
        prediction = video_pred[:, : extras["video_tokens"]].float()
        weight = extras["video_weight"]
        if weight is None:
            video_loss = ((prediction - extras["video_target"]) ** 2).mean()
        else:  # clean condition tokens are out of the loss
            error = ((prediction - extras["video_target"]) ** 2).mean(dim=-1)
            video_loss = (error * weight).sum() / weight.sum().clamp_min(1)
            metrics["condition_fraction"] = float(1 - weight.mean())
        weighted = video_loss * float(config.ltx2_video_loss_weight)
        total = total + weighted
        terms["video_flow"] = weighted.detach()
        metrics["video_loss"] = float(video_loss.detach())
    if modes.audio == "generated":
        audio_loss = ((audio_pred.float() - extras["audio_target"]) ** 2).mean()
        weighted = audio_loss * float(config.ltx2_audio_loss_weight)
        total = total + weighted
        terms["audio_flow"] = weighted.detach()
        metrics["audio_loss"] = float(audio_loss.detach())
    return LossOutput(loss=total, terms=terms, metrics=metrics)
