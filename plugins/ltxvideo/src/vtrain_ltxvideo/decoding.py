"""Clean latents back to pixel frames (:class:`vtrain.family.LatentDecoder`), and the block width
(``hidden_state_width``): what a regulariser such as CREPA needs besides the hidden-state capture."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vtrain.family import ModelBundle


def denormalise_latents(latents: torch.Tensor, vae: Any) -> torch.Tensor:
    """Inverse of :func:`vtrain_ltxvideo.encoding.normalise_latents`."""
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
    return latents * std / vae.config.scaling_factor + mean


def decode_latents(bundle: ModelBundle, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents (B, C, F', H', W') -> pixels (B, 8(F'-1)+1, 3, 32H', 32W') in [0, 1], without gradient.

    A VAE with timestep conditioning decodes at timestep 0 with no added noise (clean latents).
    """
    import torch

    vae = bundle.components["vae"]
    device = latents.device
    vae.to(device)
    z = denormalise_latents(latents.float(), vae).to(vae.dtype)
    temb = torch.zeros(z.shape[0], device=device, dtype=z.dtype) if vae.config.timestep_conditioning else None
    with torch.no_grad():
        video = vae.decode(z, temb, return_dict=False)[0]  # (B, 3, F, H, W) in [-1, 1]
    return ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 1, 3, 4).contiguous()


def hidden_state_width(bundle: ModelBundle) -> int:
    """The width of every transformer block's output (heads x head dim)."""
    config = bundle.model.config
    return int(config.num_attention_heads) * int(config.attention_head_dim)
