"""Clean video latents back to pixels (:class:`vtrain.family.LatentDecoder`) and the block width."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from vtrain.family import ModelBundle


def decode_latents(bundle: ModelBundle, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents (B, C, F', H', W') -> pixels (B, 8(F'-1)+1, 3, 32H', 32W') in [0, 1], without gradient."""
    import torch
    from diffusers import LTX2Pipeline

    vae = bundle.components["vae"]
    device = latents.device
    vae.to(device)
    z = LTX2Pipeline._denormalize_latents(latents.float(), vae.latents_mean, vae.latents_std,
                                          vae.config.scaling_factor).to(vae.dtype)
    temb = torch.zeros(z.shape[0], device=device, dtype=z.dtype) if vae.config.timestep_conditioning else None
    with torch.no_grad():
        video = vae.decode(z, temb, return_dict=False)[0]
    return ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 1, 3, 4).contiguous()


def hidden_state_width(bundle: ModelBundle) -> int:
    """Width of the video stream's block outputs (heads x head dim)."""
    config = bundle.model.config
    return int(config.num_attention_heads) * int(config.attention_head_dim)
