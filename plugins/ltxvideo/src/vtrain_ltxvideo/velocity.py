"""LTX-Video's :class:`vtrain.family.VelocityPredictor` capability (what rollout needs from a family).

The training inputs are drawn by the same code as the loss (:func:`vtrain_ltxvideo.loss.draw_inputs`), so a
batch carrying them trains exactly as if the loss had drawn them; the velocity comes from the same forward
as training, with the clean image-to-video frame at timestep 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtrain_ltxvideo.loss import (
    condition_frame_mask,
    draw_inputs,
    training_latents,
    transformer_velocity,
    unpack_like,
)

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.family import ModelBundle, TrainState


def draw_flow_inputs(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState,
                     shift_fallback: Any) -> dict[str, Any]:
    """``sigmas``, ``noise`` and ``i2v_mask`` (which samples keep their first latent frame clean); with
    ``vae_latent_sampling=sample`` also the drawn ``latents`` (and ``latents_std`` None, so the loss uses
    them as they are), drawn first as the loss draws them."""
    x0 = training_latents(batch, config)
    sigmas, noise, conditioned = draw_inputs(batch, x0, config, state, shift_fallback)
    inputs: dict[str, Any] = {"sigmas": sigmas, "noise": noise, "i2v_mask": conditioned}
    if config.vae_latent_sampling == "sample" and batch.get("latents_std") is not None:
        inputs.update(latents=x0, latents_std=None)
    return inputs


def fixed_condition_mask(batch: dict[str, Any]) -> torch.Tensor | None:
    """(B, 1, F, H, W): 1 on the clean first latent frame of the samples ``i2v_mask`` marks."""
    mask = batch.get("i2v_mask")
    if mask is None:
        return None
    x0 = batch["latents"]
    return condition_frame_mask(mask.to(x0.device).bool().reshape(x0.shape[0]), x0)


def predict_velocity(bundle: ModelBundle, batch: dict[str, Any], noisy_latents: torch.Tensor, sigmas: torch.Tensor,
                     fps: float) -> torch.Tensor:
    """The transformer's velocity for ``noisy_latents`` at ``sigmas``, in the latents' layout, float32.

    Runs ``bundle.model`` (not the distributed wrapper: a rollout forward must not join collectives)."""
    x0 = batch["latents"].float()
    frame_mask = fixed_condition_mask(batch)
    tokens, _ = transformer_velocity(bundle, bundle.model, batch, noisy_latents.to(x0.device, x0.dtype), x0,
                                     sigmas.to(x0.device, x0.dtype), frame_mask, fps)
    return unpack_like(bundle, tokens, x0)
