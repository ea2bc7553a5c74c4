"""Training must feed the transformer exactly what diffusers' LTX-2 pipelines feed it at inference.

Each test runs the real pipeline (tiny model) for one step, records the transformer call, builds the
training batch from it (noise = the pipeline's starting latents, σ = its first sigma) and checks that the
training forward passes the same arguments (tokens of both streams, per-token timesteps, σ, text
embeddings and masks, RoPE coordinates) and that the transformer's outputs agree.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import LTX2Pipeline

from vtrain_ltx2.synthetic import clip_specs, render_clip

PROMPT = "a red square moves from left to right with a rising tone"
SINGLE_PASS = dict(guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0,
                   audio_guidance_scale=1.0, audio_stg_scale=0.0, audio_modality_scale=1.0,
                   audio_guidance_rescale=0.0, spatio_temporal_guidance_blocks=None)


def _record_calls(model: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def before(_m: Any, _a: Any, kwargs: dict[str, Any]) -> None:
        calls.append({k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()})

    model.register_forward_pre_hook(before, with_kwargs=True)
    return calls


def _infer(runner: Any, bundle: Any, kind: str, **kwargs: Any) -> tuple[dict[str, Any], float]:
    from vtrain_ltx2.validation import build_pipeline

    pipeline = build_pipeline(bundle, kind)
    calls = _record_calls(bundle.model)
    with torch.no_grad():
        pipeline(prompt=PROMPT, width=64, height=64, num_frames=17, frame_rate=24.0, num_inference_steps=2,
                 max_sequence_length=runner.config.ltx2_text_max_length, output_type="latent", return_dict=False,
                 generator=torch.Generator().manual_seed(0), **SINGLE_PASS, **kwargs)
    return calls[0], float(pipeline.scheduler.sigmas[0])


def _train(runner: Any, bundle: Any, batch: dict[str, Any]) -> dict[str, Any]:
    from vtrain.family import TrainState

    calls = _record_calls(bundle.model)
    runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda shape: None))
    return calls[-1]


def _batch(runner: Any, bundle: Any, infer: dict[str, Any], sigma: float, video_tokens: int) -> dict[str, Any]:
    grid = (infer["num_frames"], infer["height"], infer["width"])
    noise = LTX2Pipeline._unpack_latents(infer["hidden_states"][:, :video_tokens].float(), *grid)
    audio_noise = infer["audio_hidden_states"].float()
    text = runner.hooks.encode_batch(bundle, {"captions": [PROMPT]}, runner.config)
    return {"latents": torch.randn_like(noise), "noise": noise, "audio_latents": torch.randn_like(audio_noise),
            "audio_noise": audio_noise, "sigmas": torch.tensor([sigma]), "fps": torch.tensor([24.0]), **text}


def _assert_same_call(bundle: Any, train: dict[str, Any], infer: dict[str, Any]) -> None:
    for key in ("hidden_states", "audio_hidden_states", "encoder_hidden_states", "audio_encoder_hidden_states",
                "video_coords", "audio_coords"):
        torch.testing.assert_close(train[key].float(), infer[key].float(), msg=key)
    torch.testing.assert_close(train["timestep"].float(), infer["timestep"].float().expand_as(train["timestep"]))
    audio_t = infer.get("audio_timestep")
    audio_t = infer["timestep"] if audio_t is None else audio_t
    torch.testing.assert_close(train["audio_timestep"].float(), audio_t.float().reshape(-1).expand_as(train["audio_timestep"]))
    torch.testing.assert_close(train["sigma"].float().reshape(-1), infer["sigma"].float().reshape(-1))
    assert torch.equal(train["encoder_attention_mask"].float(), infer["encoder_attention_mask"].float())
    for key in ("num_frames", "height", "width", "audio_num_frames", "isolate_modalities", "use_cross_timestep"):
        assert train[key] == infer[key], key
    assert train["fps"] == pytest.approx(infer["fps"])
    with torch.no_grad():
        ours, theirs = bundle.model(**train), bundle.model(**infer)
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine.float(), reference.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["2.0", "2.3"])
def test_text_to_audio_video_forward_equals_the_pipeline_step(prepared: Any, ltx2_tiny23_dir: Any, variant: str) -> None:
    runner, bundle = prepared({"pretrained_model_name_or_path": str(ltx2_tiny23_dir)} if variant == "2.3" else {})
    infer, sigma = _infer(runner, bundle, "t2av")
    assert float(infer["timestep"].reshape(-1)[0]) == pytest.approx(sigma * 1000)
    batch = _batch(runner, bundle, infer, sigma, infer["hidden_states"].shape[1])
    _assert_same_call(bundle, _train(runner, bundle, batch), infer)


def test_image_to_video_forward_equals_the_pipeline_step(prepared: Any) -> None:
    """The clean first latent frame with per-token timestep 0, audio and σ scalar, as LTX2ImageToVideoPipeline."""
    from PIL import Image

    runner, bundle = prepared({"ltx2_i2v_probability": 1.0})
    frame = (render_clip(clip_specs(1)[0], 1, 64, 64)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    infer, sigma = _infer(runner, bundle, "i2v", image=Image.fromarray(frame))
    per_frame = infer["height"] * infer["width"]
    assert infer["timestep"].shape == (1, infer["num_frames"] * per_frame)
    batch = _batch(runner, bundle, infer, sigma, infer["hidden_states"].shape[1])
    batch["latents"][:, :, 0] = batch["noise"][:, :, 0]  # frame 0 of the pipeline's latents is the clean image
    train = _train(runner, bundle, batch)
    _assert_same_call(bundle, train, infer)
    assert torch.all(train["timestep"][:, :per_frame] == 0)


def test_ic_lora_forward_equals_the_pipeline_step(prepared: Any) -> None:
    """Reference tokens after the video tokens, never noised (timestep 0), positions scaled to the target grid."""
    from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

    runner, bundle = prepared({"ltx2_ic_lora": True})
    reference = render_clip(clip_specs(2)[1], 17, 32, 32) * 2 - 1
    infer, sigma = _infer(runner, bundle, "ic_lora", reference_conditions=[LTX2ReferenceCondition(frames=reference)],
                          reference_downscale_factor=2)
    video_tokens = infer["num_frames"] * infer["height"] * infer["width"]
    assert infer["hidden_states"].shape[1] > video_tokens
    batch = _batch(runner, bundle, infer, sigma, video_tokens)
    ref_grid = (infer["num_frames"], infer["height"] // 2, infer["width"] // 2)
    batch["reference_latents"] = LTX2Pipeline._unpack_latents(infer["hidden_states"][:, video_tokens:].float(), *ref_grid)
    train = _train(runner, bundle, batch)
    _assert_same_call(bundle, train, infer)
    assert torch.all(train["timestep"][:, video_tokens:] == 0)


def test_auto_shift_equals_the_pipelines_dynamic_shift(prepared: Any) -> None:
    from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift

    runner, bundle = prepared()
    settings = bundle.noise_scheduler.config
    for shape in ((128, 16, 16, 24), (8, 3, 2, 2)):
        mu = calculate_shift(shape[1] * shape[2] * shape[3], settings["base_image_seq_len"],
                             settings["max_image_seq_len"], settings["base_shift"], settings["max_shift"])
        assert runner.hooks.schedule_shift(runner.config, shape) == pytest.approx(float(torch.tensor(mu).exp()), rel=1e-6)
