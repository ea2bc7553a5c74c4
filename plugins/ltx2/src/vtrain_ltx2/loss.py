"""The LTX-2 objective: flow matching per generated modality, with per-modality modes and conditions.

The transformer regresses ε - x0 on every generated stream; frozen streams and clean condition tokens
(image-to-video first frame, extension frames, IC-LoRA references) are out of the loss (see
:mod:`vtrain_ltx2.inputs` for how they are fed). Besides what the batch carries, the loss honours the
:class:`vtrain.family.MultiStreamVelocityPredictor` keys: the drawn inputs (``sigmas``, ``noise``,
``audio_noise``, ``video_condition``) and per stream a given model input (``noisy_latents``,
``audio_noisy_latents``) and a per-element weight (``loss_weight``, ``audio_loss_weight``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtrain_ltx2.inputs import (
    AUDIO,
    VIDEO,
    Modes,
    batch_fps,
    clean_latents,
    draw_inputs,
    transformer_inputs,
    video_output,
)

if TYPE_CHECKING:
    import torch

    from vtrain.config import ResolvedConfig
    from vtrain.family import LossOutput, ModelBundle, TrainState


def given_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Stream name -> the model input x_t the batch gives for it (rollout's self-generated inputs)."""
    return {stream.name: batch[stream.noisy_latents] for stream in (VIDEO, AUDIO)
            if batch.get(stream.noisy_latents) is not None}


def _weighted(squared: torch.Tensor, batch: dict[str, Any], key: str) -> torch.Tensor:
    weight = batch.get(key)
    return squared if weight is None else squared * weight.to(squared.device, squared.dtype).expand_as(squared)


def flow_matching_loss(bundle: ModelBundle, batch: dict[str, Any], config: ResolvedConfig, state: TrainState,
                       shift_fallback: Any, default_fps: float) -> LossOutput:
    """Weighted sum of the generated modalities' flow-matching terms; both terms are logged."""
    from diffusers import LTX2Pipeline

    from vtrain.family import LossOutput

    clean = clean_latents(bundle, batch, config)
    drawn = draw_inputs(batch, clean, config, state, shift_fallback)
    call = transformer_inputs(bundle, batch, config, clean, drawn, given_inputs(batch), batch_fps(batch, default_fps))
    video_pred, audio_pred = bundle.forward_model()(**call.kwargs)
    modes: Modes = clean.modes
    x0, a0 = clean.video, clean.audio
    terms: dict[str, torch.Tensor] = {}
    sigmas = drawn["sigmas"]
    # metrics stay detached tensors: the loop reads them after the backward pass (no sync inside the step)
    metrics: dict[str, Any] = {"sigma_mean": sigmas.mean()}
    predictions: dict[str, torch.Tensor] = {}
    total: Any = 0.0  # at least one modality is generated (batch_modes), so total becomes a tensor
    if modes.video == "generated":
        prediction = video_output(call, video_pred)
        predictions[VIDEO.name] = prediction
        squared = _weighted((prediction - (drawn["noise"] - x0)) ** 2, batch, VIDEO.loss_weight)
        if call.condition is None:
            video_loss = squared.mean()
        else:  # clean condition tokens are out of the loss
            error = LTX2Pipeline._pack_latents(squared, 1, 1).mean(dim=-1)
            weight = 1 - call.condition
            video_loss = (error * weight).sum() / weight.sum().clamp_min(1)
            metrics["condition_fraction"] = call.condition.mean()
        weighted = video_loss * float(config.ltx2_video_loss_weight)
        total = total + weighted
        terms["video_flow"] = weighted.detach()
        metrics["video_loss"] = video_loss.detach()
    if modes.audio == "generated":
        prediction = audio_pred.float()
        predictions[AUDIO.name] = prediction
        audio_loss = _weighted((prediction - (drawn["audio_noise"] - a0)) ** 2, batch, AUDIO.loss_weight).mean()
        weighted = audio_loss * float(config.ltx2_audio_loss_weight)
        total = total + weighted
        terms["audio_flow"] = weighted.detach()
        metrics["audio_loss"] = audio_loss.detach()
    return LossOutput(loss=total, terms=terms, metrics=metrics, prediction=next(iter(predictions.values())),
                      predictions=predictions)
