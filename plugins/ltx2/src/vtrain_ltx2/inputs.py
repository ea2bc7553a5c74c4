"""The inputs of one LTX-2 training forward: the modality modes, the step's random draws and the transformer call.

Each modality (video, audio) is *generated* (noised with x_t = (1-σ)x0 + σε), *frozen* (fed clean with
timestep and σ 0, still attended to through the audio↔video cross attention) or *off* (not fed: a single
zero token and ``isolate_modalities``). Conditions on the video stream keep tokens clean with per-token
timestep 0, as diffusers' pipelines feed them at inference: the first latent frame (image-to-video,
``LTX2ImageToVideoPipeline``), a prefix or suffix of latent frames (video extension,
``LTX2ConditionPipeline``) and IC-LoRA reference tokens appended after the video tokens with matched
positions (``LTX2InContextPipeline``). One σ per sample serves both modalities.

The random draws (:func:`draw_inputs`) are separate from the call (:func:`transformer_inputs`) so that the
loss and the rollout capability (:mod:`vtrain_ltx2.velocity`) draw and build exactly the same things.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vtrain.family import LatentStream

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle, TrainState

TIMESTEP_SCALE = 1000.0
FIXED_AUDIO_NOISE_SEED = 20240102  # audio noise of evaluations that pass only ``noise`` (the evaluation loss)
VIDEO = LatentStream("video", latents="latents", noise="noise", noisy_latents="noisy_latents",
                     loss_weight="loss_weight")
AUDIO = LatentStream("audio", latents="audio_latents", noise="audio_noise", noisy_latents="audio_noisy_latents",
                     loss_weight="audio_loss_weight")
CONDITION_KEY = "video_condition"  # (B, F', H', W') float, 1 on the clean condition latents of each sample


@dataclass(frozen=True)
class Modes:
    """The per-batch modality modes after the data had its say (no audio in the batch: audio off)."""

    video: str
    audio: str

    @property
    def isolate(self) -> bool:
        return "off" in (self.video, self.audio)

    def streams(self) -> tuple[LatentStream, ...]:
        """The generated streams, video first."""
        return tuple(stream for stream, mode in ((VIDEO, self.video), (AUDIO, self.audio)) if mode == "generated")


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


@dataclass
class Clean:
    """The clean latents of both streams, float32 on the text's device; a stream that is off is one zero token."""

    modes: Modes
    video: torch.Tensor  # (B, C, F', H', W')
    audio: torch.Tensor  # (B, L, D)


def clean_latents(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig) -> Clean:
    import torch

    transformer = bundle.model
    modes = batch_modes(config, batch)
    text = batch["video_prompt_embeds"]
    device, size = text.device, text.shape[0]
    if modes.video == "off":
        video = torch.zeros(size, int(transformer.config.in_channels), 1, 1, 1, device=device)
    else:
        video = batch["latents"].to(device, torch.float32)
    if modes.audio == "off":
        audio = torch.zeros(size, 1, int(transformer.config.audio_in_channels), device=device)
    else:
        audio = batch["audio_latents"].to(device, torch.float32)
    return Clean(modes, video, audio)


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


def condition_mask(batch: dict[str, Any], x0: torch.Tensor, config: ResolvedConfig) -> torch.Tensor | None:
    """(B, F', H', W') float, 1 where a video latent is a clean condition (first frame, extension frames);
    ``batch["video_condition"]`` as given; None when no condition is configured (no mask work)."""
    import torch

    if batch.get(CONDITION_KEY) is not None:
        return batch[CONDITION_KEY].to(x0.device, torch.float32)
    size, frames = x0.shape[0], x0.shape[2]
    probability = float(config.ltx2_i2v_probability)
    if (probability <= 0 or frames < 2) and int(config.ltx2_extension_frames) <= 0:
        return None
    mask = torch.zeros(size, frames, *x0.shape[3:], device=x0.device)
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


def draw_inputs(batch: dict[str, Any], clean: Clean, config: ResolvedConfig, state: TrainState,
                shift_fallback: Any) -> dict[str, Any]:
    """The step's random inputs, each taken from the batch when given: ``sigmas``, ``noise``, ``video_condition``
    (only when the video is generated and a condition is configured) and ``audio_noise``, drawn in this order."""
    import torch

    x0, a0, modes = clean.video, clean.audio, clean.modes
    size, device = x0.shape[0], x0.device
    shape = tuple(x0.shape[1:]) if modes.video != "off" else tuple(a0.shape[1:])
    drawn: dict[str, Any] = {"sigmas": draw_sigmas(batch, size, shape, config, state, shift_fallback, device)}
    drawn["noise"] = batch["noise"].to(device, x0.dtype) if batch.get("noise") is not None else torch.randn_like(x0)
    if modes.video == "generated":
        mask = condition_mask(batch, x0, config)
        if mask is not None:
            drawn[CONDITION_KEY] = mask
    if batch.get("audio_noise") is not None:
        drawn["audio_noise"] = batch["audio_noise"].to(device, a0.dtype)
    elif batch.get("noise") is not None:  # a fixed-noise evaluation that only fixes the video noise: fix the audio's too
        drawn["audio_noise"] = torch.randn(a0.shape, generator=torch.Generator().manual_seed(FIXED_AUDIO_NOISE_SEED)
                                           ).to(device)
    else:
        drawn["audio_noise"] = torch.randn_like(a0)
    return drawn


@dataclass
class Call:
    """The transformer's keyword arguments and how to read its video output."""

    kwargs: dict[str, Any]
    condition: torch.Tensor | None  # (B, N) 1 on clean condition tokens of the target clip, None: none
    video_tokens: int  # the target clip's tokens (IC-LoRA reference tokens follow them)
    grid: tuple[int, int, int]  # (F', H', W')


def transformer_inputs(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, clean: Clean,
                       drawn: Mapping[str, Any], noisy: Mapping[str, torch.Tensor], fps: float) -> Call:
    """The call for the clean latents, the draws and the given model inputs ``noisy`` (stream name -> x_t in the
    stream's layout; a generated stream not in it is interpolated from ``drawn``'s noise)."""
    import torch
    from diffusers import LTX2Pipeline

    from vtrain.flow_matching import noisy_latents

    transformer = bundle.model
    dtype = bundle.meta.get("compute_dtype") or next(transformer.parameters()).dtype
    x0, a0, modes, sigmas = clean.video, clean.audio, clean.modes, drawn["sigmas"]
    text = batch["video_prompt_embeds"]
    size, device = x0.shape[0], x0.device
    _, _, frames, height, width = x0.shape
    timestep = sigmas * float(bundle.noise_scheduler.config.get("num_train_timesteps", TIMESTEP_SCALE))

    video_tokens = frames * height * width  # patch size 1
    if modes.video == "generated":
        x_t = noisy["video"].to(device, x0.dtype) if "video" in noisy else noisy_latents(x0, drawn["noise"], sigmas)
        frame_mask = drawn.get(CONDITION_KEY)
        condition = None if frame_mask is None else LTX2Pipeline._pack_latents(frame_mask[:, None], 1, 1).squeeze(-1)
        hidden = LTX2Pipeline._pack_latents(x_t, 1, 1)
        video_t = timestep
        if condition is not None:  # clean condition tokens (the common text-to-video step packs x0 not at all)
            tokens = LTX2Pipeline._pack_latents(x0, 1, 1)
            hidden = hidden * (1 - condition[..., None]) + tokens * condition[..., None]
            video_t = timestep[:, None] * (1 - condition)
        video_sigma = timestep
    else:
        tokens = LTX2Pipeline._pack_latents(x0, 1, 1)
        condition = torch.ones(tokens.shape[:2], device=device)
        hidden, video_t, video_sigma = tokens, torch.zeros(tokens.shape[:2], device=device), torch.zeros_like(timestep)
    coords = transformer.rope.prepare_video_coords(size, frames, height, width, device, fps=fps)
    references = batch.get("reference_latents") if config.ltx2_ic_lora else None
    if references is not None and modes.video != "off":
        hidden, video_t, coords = _append_references(transformer, references.float().to(device), hidden, video_t,
                                                     coords, (frames, height, width), fps)

    if modes.audio == "generated":
        audio_hidden = noisy["audio"].to(device, a0.dtype) if "audio" in noisy else \
            noisy_latents(a0, drawn["audio_noise"], sigmas)
        audio_t = timestep
    else:
        audio_hidden, audio_t = a0, torch.zeros_like(timestep)
    audio_coords = transformer.audio_rope.prepare_audio_coords(size, a0.shape[1], device)

    kwargs = dict(
        hidden_states=hidden.to(dtype), audio_hidden_states=audio_hidden.to(dtype),
        encoder_hidden_states=text.to(dtype), audio_encoder_hidden_states=batch["audio_prompt_embeds"].to(dtype),
        timestep=video_t, audio_timestep=audio_t, sigma=video_sigma, audio_sigma=audio_t,
        encoder_attention_mask=batch["prompt_attention_mask"], audio_encoder_attention_mask=batch["prompt_attention_mask"],
        num_frames=frames, height=height, width=width, fps=fps, audio_num_frames=a0.shape[1],
        video_coords=coords, audio_coords=audio_coords, isolate_modalities=modes.isolate,
        spatio_temporal_guidance_blocks=None, perturbation_mask=None, use_cross_timestep=True,
        attention_kwargs=None, return_dict=False)
    return Call(kwargs=kwargs, condition=condition, video_tokens=video_tokens, grid=(frames, height, width))


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


def video_output(call: Call, video_pred: torch.Tensor) -> torch.Tensor:
    """The target clip's float prediction in the latents' layout (B, C, F', H', W'); reference tokens dropped."""
    from diffusers import LTX2Pipeline

    return LTX2Pipeline._unpack_latents(video_pred[:, : call.video_tokens].float(), *call.grid, 1, 1)


def batch_fps(batch: dict[str, Any], default: float) -> float:
    fps = batch.get("fps")
    if fps is None:
        return default
    value = float(fps.reshape(-1)[0])
    return value if value > 0 else default
