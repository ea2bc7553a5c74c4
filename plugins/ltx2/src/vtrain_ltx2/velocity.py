"""LTX-2's :class:`vtrain.family.MultiStreamVelocityPredictor` capability (what rollout needs from a family).

The video and the audio latents are two streams denoised together with one σ per sample. A stream the batch
does not generate (frozen, off) is not listed, so rollout leaves it clean; image-to-video and extension frames
are the video stream's fixed condition; IC-LoRA reference tokens are not part of any stream and stay clean in
every forward. The draws and the transformer call are the loss's own (:mod:`vtrain_ltx2.inputs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vtrain_ltx2.inputs import (
    CONDITION_KEY,
    VIDEO,
    batch_fps,
    batch_modes,
    clean_latents,
    draw_inputs,
    transformer_inputs,
    video_output,
)

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.family import LatentStream, ModelBundle, TrainState


def latent_streams(batch: dict[str, Any], config: ResolvedConfig) -> tuple[LatentStream, ...]:
    """The generated streams of this batch: video, audio, or both (video first)."""
    return batch_modes(config, batch).streams()


def draw_flow_inputs(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState,
                     shift_fallback: Any) -> dict[str, Any]:
    """``sigmas``, ``noise``, ``audio_noise`` and, with a condition, ``video_condition``: as the loss draws them."""
    return draw_inputs(batch, clean_latents(bundle, batch, config), config, state, shift_fallback)


def stream_condition_masks(batch: dict[str, Any], config: ResolvedConfig) -> dict[str, torch.Tensor]:
    """``video``: (B, 1, F', H', W'), 1 on the clean first / extension frames, when the batch has a condition."""
    mask = batch.get(CONDITION_KEY)
    if mask is None or batch_modes(config, batch).video != "generated":
        return {}
    return {VIDEO.name: mask[:, None]}


def predict_stream_velocities(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig,
                              noisy: Mapping[str, torch.Tensor], sigmas: torch.Tensor,
                              default_fps: float) -> dict[str, torch.Tensor]:
    """The transformer's velocity for each generated stream, float32, in the streams' layouts.

    Runs ``bundle.model`` (not the distributed wrapper: a rollout forward must not join collectives)."""
    clean = clean_latents(bundle, batch, config)
    drawn = {**{key: batch[key] for key in ("noise", "audio_noise", CONDITION_KEY) if batch.get(key) is not None},
             "sigmas": sigmas.to(clean.video.device, clean.video.dtype)}
    call = transformer_inputs(bundle, batch, config, clean, drawn, noisy, batch_fps(batch, default_fps))
    video_pred, audio_pred = bundle.model(**call.kwargs)
    out: dict[str, torch.Tensor] = {}
    if clean.modes.video == "generated":
        out["video"] = video_output(call, video_pred)
    if clean.modes.audio == "generated":
        out["audio"] = audio_pred.float()
    return out
