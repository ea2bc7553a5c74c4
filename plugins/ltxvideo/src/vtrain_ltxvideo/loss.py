"""The LTX-Video flow-matching objective, with image-to-video first-frame conditioning.

x_t = (1 - sigma) * x0 + sigma * noise; the transformer predicts noise - x0 (MSE). For an i2v
sample the first latent frame is given clean, its tokens get timestep 0 (the conditioning mask of
diffusers' ``LTXImageToVideoPipeline``) and they are left out of the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtrain_ltxvideo.encoding import pack_latents

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.family import LossOutput, ModelBundle, TrainState

TIMESTEP_SCALE = 1000.0  # LTX-Video's num_train_timesteps: the pipeline passes timesteps = sigma * this


def draw_sigmas(batch: dict[str, Any], x0: torch.Tensor, config: ResolvedConfig, state: TrainState,
                shift_fallback: Any) -> torch.Tensor:
    """``batch["sigmas"]`` when given (used as is), else drawn from the torch global RNG and shifted."""
    from vtrain.flow_matching import sample_sigmas, shift_sigmas

    if batch.get("sigmas") is not None:
        return batch["sigmas"].to(x0.device, torch_float())
    sigmas = sample_sigmas(x0.shape[0], config.flow_sigma_sampling, config.flow_logit_mean, config.flow_logit_std,
                           device=x0.device)
    shape = tuple(x0.shape[1:])
    shift = state.shift_for(shape) if state is not None and state.shift_for else shift_fallback(config, shape)
    if shift is not None:
        sigmas = shift_sigmas(sigmas, shift)
    return sigmas


def torch_float() -> Any:
    import torch

    return torch.float32


def training_latents(batch: dict[str, Any], config: ResolvedConfig) -> torch.Tensor:
    """The clean latents x0: the posterior mean (``mode``), or with ``sample`` a fresh draw
    mean + std * eps from the torch RNG (restored on resume, so resumes stay bit-exact)."""
    import torch

    mean = batch["latents"].float()
    std = batch.get("latents_std")
    if config.vae_latent_sampling != "sample" or std is None:
        return mean
    return mean + std.to(mean.device, mean.dtype) * torch.randn_like(mean)


def i2v_probability(config: ResolvedConfig) -> float:
    """The chance an i2v-dataset sample conditions its first frame: 1 with ``ltx_protect_first_frame``."""
    return 1.0 if config.ltx_protect_first_frame else float(config.i2v_conditioning_probability)


def i2v_mask(batch: dict[str, Any], x0: torch.Tensor, probability: float) -> torch.Tensor:
    """(B,) bool: which samples keep their first latent frame clean this step.

    ``batch["is_i2v"]`` (per sample, from the dataset's ``video.is_i2v``) defaults to true for LTX-Video.
    A single latent frame (an image) is never conditioned: there would be nothing left to learn.
    """
    import torch

    size, frames = x0.shape[0], x0.shape[2]
    flags = batch.get("is_i2v")
    wanted = torch.ones(size, dtype=torch.bool, device=x0.device) if flags is None else \
        torch.as_tensor(flags, device=x0.device).bool().reshape(size)
    if frames < 2 or probability <= 0:
        return torch.zeros_like(wanted)
    if probability < 1:
        wanted = wanted & (torch.rand(size, device=x0.device) < probability)
    return wanted


def draw_inputs(batch: dict[str, Any], x0: torch.Tensor, config: ResolvedConfig, state: TrainState,
                shift_fallback: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sigmas, noise, conditioned): each taken from the batch when given (``sigmas``, ``noise``,
    ``i2v_mask``), else drawn in this order from the torch global RNG."""
    import torch

    sigmas = draw_sigmas(batch, x0, config, state, shift_fallback)
    noise = batch["noise"].to(x0.device, x0.dtype) if batch.get("noise") is not None else torch.randn_like(x0)
    if batch.get("i2v_mask") is not None:
        conditioned = batch["i2v_mask"].to(x0.device).bool().reshape(x0.shape[0])
    else:
        conditioned = i2v_mask(batch, x0, i2v_probability(config))
    return sigmas, noise, conditioned


def causal_video_coords(batch_size: int, grid: tuple[int, int, int], patch: int, patch_t: int, temporal: int,
                        spatial: int, fps: float, device: Any) -> torch.Tensor:
    """(B, 3, tokens) pixel-space positions of the token grid, the 0.9.5+ convention.

    Each token's frame position is its first pixel frame under the causal VAE (latent frame k covers
    pixel frames 8k-7 .. 8k, the first latent frame pixel frame 0), in seconds; height and width are
    pixel offsets. Token order is that of :func:`pack_latents`.
    """
    import torch

    frames, height, width = grid
    f, h, w = torch.meshgrid(torch.arange(frames, device=device) * patch_t, torch.arange(height, device=device) * patch,
                             torch.arange(width, device=device) * patch, indexing="ij")
    first_pixel_frame = (f * temporal + 1 - temporal).clamp(min=0).float()
    coords = torch.stack([first_pixel_frame / fps, (h * spatial).float(), (w * spatial).float()]).flatten(1)
    return coords.unsqueeze(0).expand(batch_size, -1, -1)


def condition_frame_mask(conditioned: torch.Tensor, x0: torch.Tensor) -> torch.Tensor | None:
    """(B, 1, F, H, W): 1 on the first latent frame of conditioned samples; ``None`` when none is."""
    import torch

    if not bool(conditioned.any()):
        return None
    frame_mask = torch.zeros(x0.shape[0], 1, *x0.shape[2:], device=x0.device)  # 1 = clean condition
    frame_mask[conditioned, :, 0] = 1.0
    return frame_mask


def transformer_velocity(bundle: ModelBundle, model: Any, batch: dict[str, Any], x_t: torch.Tensor, x0: torch.Tensor,
                         sigmas: torch.Tensor, frame_mask: torch.Tensor | None,
                         fps: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(packed float prediction (B, S, C'), token mask (B, S) of the clean condition or ``None``).

    The condition frame is made clean in the input and gets timestep 0 (per-token timesteps)."""
    patch, patch_t = bundle.meta["patch_size"], bundle.meta["patch_size_t"]
    timestep = sigmas * float(bundle.noise_scheduler.config.get("num_train_timesteps", TIMESTEP_SCALE))
    token_mask = None
    if frame_mask is not None:
        x_t = x_t * (1 - frame_mask) + x0 * frame_mask
        token_mask = pack_latents(frame_mask, patch, patch_t).squeeze(-1)  # (B, S)
        timestep = timestep[:, None] * (1 - token_mask)  # per-token timesteps, 0 for the clean frame
    frames, height, width = x0.shape[2] // patch_t, x0.shape[3] // patch, x0.shape[4] // patch
    dtype = bundle.meta.get("compute_dtype") or next(bundle.model.parameters()).dtype
    positions: dict[str, Any]
    if bundle.meta.get("temporal_positions") == "causal":
        positions = {"video_coords": causal_video_coords(x0.shape[0], (frames, height, width), patch, patch_t,
                                                         bundle.meta["temporal_compression"],
                                                         bundle.meta["spatial_compression"], fps, x0.device)}
    else:
        positions = {"rope_interpolation_scale": (bundle.meta["temporal_compression"] / fps,
                                                  bundle.meta["spatial_compression"],
                                                  bundle.meta["spatial_compression"])}
    prediction = model(
        hidden_states=pack_latents(x_t, patch, patch_t).to(dtype),
        encoder_hidden_states=batch["prompt_embeds"].to(dtype),
        timestep=timestep,
        encoder_attention_mask=batch["prompt_attention_mask"],
        num_frames=frames, height=height, width=width,
        return_dict=False,
        **positions,
    )[0].float()
    return prediction, token_mask


def unpack_like(bundle: ModelBundle, tokens: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Packed tokens back to the latents' layout (B, C, F, H, W)."""
    from vtrain_ltxvideo.encoding import unpack_latents

    patch, patch_t = bundle.meta["patch_size"], bundle.meta["patch_size_t"]
    return unpack_latents(tokens, x0.shape[2] // patch_t, x0.shape[3] // patch, x0.shape[4] // patch, patch, patch_t)


def flow_matching_loss(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState,
                       shift_fallback: Any, fps: float) -> LossOutput:
    """The training loss for one batch of cached latents and text embeddings.

    Honours the optional batch keys ``sigmas``, ``noise``, ``i2v_mask`` (used as given), ``noisy_latents``
    (the model input instead of the interpolation) and ``loss_weight`` (per-element weight on the error)."""
    from vtrain.family import LossOutput
    from vtrain.flow_matching import noisy_latents

    patch, patch_t = bundle.meta["patch_size"], bundle.meta["patch_size_t"]
    x0 = training_latents(batch, config)
    sigmas, noise, conditioned = draw_inputs(batch, x0, config, state, shift_fallback)
    if batch.get("noisy_latents") is not None:
        x_t = batch["noisy_latents"].to(x0.device, x0.dtype)
    else:
        x_t = noisy_latents(x0, noise, sigmas)
    frame_mask = condition_frame_mask(conditioned, x0)
    prediction, token_mask = transformer_velocity(bundle, bundle.forward_model(), batch, x_t, x0, sigmas, frame_mask,
                                                  fps)
    target = pack_latents(noise - x0, patch, patch_t)
    squared = (prediction - target) ** 2
    if batch.get("loss_weight") is not None:
        squared = squared * pack_latents(batch["loss_weight"].to(x0.device, x0.dtype).expand_as(x0), patch, patch_t)
    error = squared.mean(dim=-1)  # (B, S)
    if token_mask is None:
        loss = error.mean()
    else:  # the clean condition frame's tokens are left out of the loss
        weight = 1 - token_mask
        loss = (error * weight).sum() / weight.sum().clamp_min(1)
    return LossOutput(loss=loss, terms={"flow": loss.detach()},
                      metrics={"sigma_mean": float(sigmas.mean()), "i2v_fraction": float(conditioned.float().mean())},
                      prediction=unpack_like(bundle, prediction, x0))
