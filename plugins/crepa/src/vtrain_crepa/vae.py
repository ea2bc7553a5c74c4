"""``crepa_drop_vae_encoder``: free the VAE encoder when training only from cached latents.

CREPA needs the VAE decoder (to decode clean latents for the image encoder) but not its encoder
once every clip is cached. The encoder is replaced by a module that raises a clear error if
anything still tries to encode pixels.
"""

from __future__ import annotations

from typing import Any

import torch

from vtrain.errors import ConfigError, Problem


class DroppedVAEEncoder(torch.nn.Module):
    """Stands in for a VAE encoder freed by ``crepa_drop_vae_encoder``."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the VAE encoder was freed by crepa_drop_vae_encoder=true, but something needs to encode "
                           "pixels (uncached data or an image-conditioned validation); set crepa_drop_vae_encoder=false")


def vae_with_encoder(bundle: Any, family_name: str) -> Any:
    """The bundle's ``components['vae']`` if it has an ``encoder`` module; a ConfigError otherwise."""
    vae = bundle.components.get("vae")
    if vae is None or not isinstance(getattr(vae, "encoder", None), torch.nn.Module):
        raise ConfigError([Problem("crepa_drop_vae_encoder",
                                   f"the {family_name!r} family's model has no VAE encoder to drop "
                                   "(bundle.components['vae'].encoder)", "remove crepa_drop_vae_encoder")])
    return vae


def drop_vae_encoder(bundle: Any, family_name: str) -> int:
    """Replace the VAE encoder with :class:`DroppedVAEEncoder`; return the parameters freed."""
    vae = vae_with_encoder(bundle, family_name)
    freed = sum(p.numel() for p in vae.encoder.parameters())
    vae.encoder = DroppedVAEEncoder()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return freed
