"""Pixels -> normalised VAE latents, captions -> T5 embeddings, and token packing.

The data-layer contract: ``pixels`` are ``(B, F, C, H, W)`` floats in [0, 1]; they are scaled to
[-1, 1] (what diffusers' LTX pipelines feed the VAE), encoded, and normalised with the VAE's
``latents_mean``/``latents_std`` and scaling factor. Latents are stored unpacked ``(B, C, F', H', W')``
and packed into tokens in the loss with the transformer's own patch sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtrain_ltxvideo.checks import FRAME_FACTOR, SPATIAL_ALIGNMENT, is_valid_frame_count, round_frame_count

if TYPE_CHECKING:
    import torch

    from vtrain.family import ModelBundle


def module_device(module: Any) -> torch.device:
    return next(module.parameters()).device


def pack_latents(latents: torch.Tensor, patch_size: int, patch_size_t: int) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, F/pt * H/p * W/p, C * pt * p * p), the order diffusers' LTX pipeline uses."""
    batch, channels, frames, height, width = latents.shape
    x = latents.reshape(batch, channels, frames // patch_size_t, patch_size_t, height // patch_size, patch_size,
                        width // patch_size, patch_size)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4, 7).flatten(1, 3)


def unpack_latents(tokens: torch.Tensor, frames: int, height: int, width: int, patch_size: int,
                   patch_size_t: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents`; ``frames/height/width`` are the post-patch grid sizes."""
    batch = tokens.size(0)
    x = tokens.reshape(batch, frames, height, width, -1, patch_size_t, patch_size, patch_size)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(2, 3)


def normalise_latents(latents: torch.Tensor, vae: Any) -> torch.Tensor:
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
    return (latents - mean) * vae.config.scaling_factor / std


def check_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Validate a (B, F, C, H, W) [0, 1] batch and trim it to 8k+1 frames (trailing frames dropped)."""
    if pixels.dim() != 5:
        raise ValueError(f"pixels must be (batch, frames, channels, height, width), got shape {tuple(pixels.shape)}")
    _, frames, channels, height, width = pixels.shape
    if channels != 3:
        raise ValueError(f"pixels must have 3 colour channels in dim 2, got {channels} (shape {tuple(pixels.shape)})")
    if height % SPATIAL_ALIGNMENT or width % SPATIAL_ALIGNMENT:
        raise ValueError(f"LTX-Video needs frame sizes that are multiples of {SPATIAL_ALIGNMENT}, got {width}x{height}; "
                         "the data layer should resize/crop to the family's spatial_alignment")
    low, high = float(pixels.min()), float(pixels.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(f"pixels must be in [0, 1] (they are scaled to [-1, 1] here), got values in [{low:.3f}, {high:.3f}]")
    if not is_valid_frame_count(frames):
        pixels = pixels[:, : round_frame_count(frames)]
    return pixels


def encode_posterior(bundle: ModelBundle, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, F, C, H, W) in [0, 1] -> the VAE posterior in normalised latent units: (mean, std), each
    (B, C, 1 + (F-1)/8, H/32, W/32). Normalisation is affine, so mean + std * eps normalised equals
    the normalised ``latent_dist.sample()`` with the same eps."""
    import torch

    vae = bundle.components["vae"]
    device = module_device(bundle.model)
    vae.to(device)
    pixels = check_pixels(pixels)
    video = pixels.to(device=device, dtype=vae.dtype).permute(0, 2, 1, 3, 4) * 2.0 - 1.0
    with torch.no_grad():
        posterior = vae.encode(video).latent_dist
    mean = normalise_latents(posterior.mean.float(), vae)
    scale = (vae.config.scaling_factor / vae.latents_std.view(1, -1, 1, 1, 1)).to(mean.device, mean.dtype)
    return mean, posterior.std.float() * scale


def encode_pixels(bundle: ModelBundle, pixels: torch.Tensor) -> torch.Tensor:
    """(B, F, C, H, W) in [0, 1] -> normalised latents (the posterior's mode) (B, C, 1 + (F-1)/8, H/32, W/32)."""
    return encode_posterior(bundle, pixels)[0]


def encode_captions(bundle: ModelBundle, captions: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """T5 embeddings at ``max_length`` tokens, exactly as ``LTXPipeline.encode_prompt`` computes them."""
    import torch

    tokenizer, encoder = bundle.components["tokenizer"], bundle.components["text_encoder"]
    device = module_device(bundle.model)
    encoder.to(device)
    tokens = tokenizer(list(captions), padding="max_length", max_length=max_length, truncation=True,
                       add_special_tokens=True, return_tensors="pt")
    with torch.no_grad():
        embeds = encoder(tokens.input_ids.to(device))[0]
    return {"prompt_embeds": embeds, "prompt_attention_mask": tokens.attention_mask.bool().to(device)}


__all__ = ["FRAME_FACTOR", "check_pixels", "encode_captions", "encode_pixels", "pack_latents", "unpack_latents"]
