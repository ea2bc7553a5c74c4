"""Training must feed the transformer exactly what diffusers' LTX-Video pipelines feed it at inference.

Each test runs the real pipeline (tiny model), records the transformer call, and compares the
training forward's arguments with it: latent normalisation (non-trivial VAE statistics), packing,
timestep scale, per-token timesteps of the i2v condition, rope interpolation scale, text mask, and
the dynamic (auto) shift against the scheduler's own maths.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vtrain_ltxvideo.encoding import pack_latents, unpack_latents
from vtrain_ltxvideo.synthetic import clip_specs, render_clip

PROMPT = "a red square moves from left to right"


def _record_calls(model: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def before(_m: Any, _a: Any, kwargs: dict[str, Any]) -> None:
        calls.append({k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()})

    model.register_forward_pre_hook(before, with_kwargs=True)
    return calls


def _train_call(runner: Any, bundle: Any, batch: dict[str, Any]) -> dict[str, Any]:
    from vtrain.family import TrainState

    calls = _record_calls(bundle.model)
    runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda shape: None))
    return calls[-1]


def _assert_same_call(train: dict[str, Any], infer: dict[str, Any]) -> None:
    torch.testing.assert_close(train["hidden_states"], infer["hidden_states"])
    torch.testing.assert_close(train["timestep"].float(), infer["timestep"].float().expand_as(train["timestep"]))
    torch.testing.assert_close(train["encoder_hidden_states"], infer["encoder_hidden_states"])
    assert torch.equal(train["encoder_attention_mask"].bool(), infer["encoder_attention_mask"].bool())
    for key in ("num_frames", "height", "width"):
        assert train[key] == infer[key], key
    assert tuple(train["rope_interpolation_scale"]) == pytest.approx(tuple(infer["rope_interpolation_scale"]))


def test_normalisation_matches_the_pipeline_with_real_statistics(prepared: Any) -> None:
    """Non-trivial latents_mean/std and scaling factor: encode normalises like ``_normalize_latents``,
    decode undoes it like ``_denormalize_latents`` (the tiny VAE's defaults, 0/1/1, would hide a wrong direction)."""
    from diffusers import LTXPipeline

    from vtrain_ltxvideo.decoding import denormalise_latents

    runner, bundle = prepared()
    vae = bundle.components["vae"]
    channels = vae.config.latent_channels
    generator = torch.Generator().manual_seed(0)
    vae.latents_mean.copy_(torch.randn(channels, generator=generator))
    vae.latents_std.copy_(torch.rand(channels, generator=generator) + 0.5)
    vae.register_to_config(scaling_factor=1.7)
    pixels = render_clip(clip_specs(1)[0], 9, 64, 64).unsqueeze(0)
    latents = runner.hooks.encode_batch(bundle, {"pixels": pixels}, runner.config)["latents"]
    raw = vae.encode(pixels.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    expected = LTXPipeline._normalize_latents(raw, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    torch.testing.assert_close(latents, expected)
    assert not torch.allclose(latents, raw, atol=1e-2)
    back = LTXPipeline._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    torch.testing.assert_close(denormalise_latents(latents, vae), back)
    torch.testing.assert_close(back, raw, rtol=1e-4, atol=1e-5)


def test_text_to_video_training_forward_equals_the_pipeline_step(prepared: Any) -> None:
    from vtrain_ltxvideo.validation import build_pipeline

    runner, bundle = prepared()
    pipeline = build_pipeline(bundle, None)
    calls = _record_calls(bundle.model)
    with torch.no_grad():
        pipeline(prompt=PROMPT, width=64, height=96, num_frames=17, num_inference_steps=2, guidance_scale=1.0,
                 frame_rate=25, max_sequence_length=runner.config.tokenizer_max_length, output_type="latent",
                 generator=torch.Generator().manual_seed(0))
    infer = calls[0]
    sigma = float(pipeline.scheduler.sigmas[0])
    assert float(infer["timestep"][0]) == pytest.approx(sigma * 1000)  # the scale training must use
    grid = (infer["num_frames"], infer["height"], infer["width"])
    assert grid == (3, 3, 2)
    noise = unpack_latents(infer["hidden_states"].float(), *grid, 1, 1)  # first step: x_t is pure noise
    text = runner.hooks.encode_batch(bundle, {"captions": [PROMPT]}, runner.config)
    batch = {"latents": torch.randn_like(noise), "noise": noise, "sigmas": torch.tensor([sigma]),
             "is_i2v": torch.tensor([False]), **text}
    _assert_same_call(_train_call(runner, bundle, batch), infer)


def test_timestep_scale_follows_the_schedulers_num_train_timesteps(prepared: Any) -> None:
    """The pipeline passes ``scheduler.timesteps`` = sigma * num_train_timesteps; training uses the same scale."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    runner, bundle = prepared()
    bundle.noise_scheduler = FlowMatchEulerDiscreteScheduler.from_config(bundle.noise_scheduler.config,
                                                                         num_train_timesteps=500)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(bundle.noise_scheduler.config)
    scheduler.set_timesteps(sigmas=[0.8, 0.4], mu=0.0)
    latents = torch.randn(1, 8, 2, 2, 2)
    text = runner.hooks.encode_batch(bundle, {"captions": [PROMPT]}, runner.config)
    batch = {"latents": latents, "noise": torch.randn_like(latents), "sigmas": scheduler.sigmas[:1],
             "is_i2v": torch.tensor([False]), **text}
    torch.testing.assert_close(_train_call(runner, bundle, batch)["timestep"], scheduler.timesteps[:1])


def test_image_to_video_training_forward_equals_the_pipeline_step(prepared: Any) -> None:
    """The clean first latent frame, its per-token timestep 0 and everything else as LTXImageToVideoPipeline."""
    from PIL import Image

    from vtrain_ltxvideo.validation import build_pipeline

    runner, bundle = prepared({"i2v_conditioning_probability": 1.0})
    frame = (render_clip(clip_specs(1)[0], 1, 64, 64)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(frame)
    pipeline = build_pipeline(bundle, image)
    calls = _record_calls(bundle.model)
    with torch.no_grad():
        pipeline(image=image, prompt=PROMPT, width=64, height=64, num_frames=17, num_inference_steps=2,
                 guidance_scale=1.0, frame_rate=25, max_sequence_length=runner.config.tokenizer_max_length,
                 output_type="latent", generator=torch.Generator().manual_seed(0))
    infer = calls[0]
    grid = (infer["num_frames"], infer["height"], infer["width"])
    per_frame = grid[1] * grid[2]
    sigma = float(pipeline.scheduler.sigmas[0])
    assert infer["timestep"].shape == (1, grid[0] * per_frame)
    packed = infer["hidden_states"].float()
    start = unpack_latents(packed, *grid, 1, 1)  # frame 0: the encoded image; the rest: noise (sigma 1)
    x0 = torch.randn_like(start)
    x0[:, :, 0] = start[:, :, 0]
    text = runner.hooks.encode_batch(bundle, {"captions": [PROMPT]}, runner.config)
    batch = {"latents": x0, "noise": start, "sigmas": torch.tensor([sigma]), "is_i2v": torch.tensor([True]), **text}
    train = _train_call(runner, bundle, batch)
    _assert_same_call(train, infer)
    assert torch.all(train["timestep"][:, :per_frame] == 0)
    torch.testing.assert_close(train["hidden_states"][:, :per_frame], pack_latents(x0, 1, 1)[:, :per_frame])


@pytest.mark.parametrize("shape", [(128, 16, 16, 24), (128, 7, 24, 16), (8, 3, 2, 2)])
def test_auto_shift_equals_the_pipelines_dynamic_shift(prepared: Any, shape: tuple[int, ...]) -> None:
    """exp(mu) with mu = diffusers' ``calculate_shift`` of the pipeline's sequence length, and shifting sigmas by
    it equals the scheduler's own exponential time shift (before the inference-only terminal stretch)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

    from vtrain.flow_matching import shift_sigmas

    runner, bundle = prepared({"flow_schedule_auto_shift": True})
    settings = bundle.noise_scheduler.config
    tokens = shape[1] * shape[2] * shape[3]  # the pipeline's video_sequence_length (patch sizes 1)
    mu = calculate_shift(tokens, settings["base_image_seq_len"], settings["max_image_seq_len"],
                         settings["base_shift"], settings["max_shift"])
    shift = runner.hooks.schedule_shift(runner.config, shape)
    assert shift == pytest.approx(torch.tensor(mu).exp().item(), rel=1e-6)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(settings, shift_terminal=None)
    sigmas = torch.linspace(1.0, 0.05, 8)
    scheduler.set_timesteps(sigmas=sigmas.tolist(), mu=mu)
    torch.testing.assert_close(scheduler.sigmas[:-1], shift_sigmas(sigmas, shift), rtol=1e-5, atol=1e-6)


def _causal_reference_coords(batch: int, grid: tuple[int, int, int], fps: float) -> torch.Tensor:
    """The positions LTXConditionPipeline builds for a latent grid (its own static helpers)."""
    from diffusers import LTXConditionPipeline

    ids = LTXConditionPipeline._prepare_video_ids(batch, *grid, patch_size=1, patch_size_t=1)
    coords = LTXConditionPipeline._scale_video_ids(ids, scale_factor=32, scale_factor_t=8, frame_index=0).float()
    coords[:, 0] = coords[:, 0] * (1.0 / fps)
    return coords


@pytest.mark.parametrize("fps", [25.0, 24.0])
def test_causal_positions_equal_the_condition_pipelines(fps: float) -> None:
    from vtrain_ltxvideo.loss import causal_video_coords

    grid = (4, 3, 5)
    mine = causal_video_coords(2, grid, 1, 1, 8, 32, fps, torch.device("cpu"))
    torch.testing.assert_close(mine, _causal_reference_coords(2, grid, fps))


def test_causal_training_forward_equals_the_condition_pipeline_step(prepared: Any) -> None:
    """With ltx_temporal_positions=causal (0.9.5+), training passes the video_coords that LTXConditionPipeline
    passes at inference, and validation uses that pipeline."""
    from diffusers import LTXConditionPipeline

    from vtrain_ltxvideo.validation import build_pipeline

    runner, bundle = prepared({"ltx_temporal_positions": "causal"})
    assert bundle.meta["temporal_positions"] == "causal"
    pipeline = build_pipeline(bundle, None)
    assert isinstance(pipeline, LTXConditionPipeline)
    calls = _record_calls(bundle.model)
    with torch.no_grad():
        pipeline(prompt=PROMPT, width=64, height=96, num_frames=17, num_inference_steps=2, guidance_scale=1.0,
                 frame_rate=24, max_sequence_length=runner.config.tokenizer_max_length, output_type="latent",
                 generator=torch.Generator().manual_seed(0))
    infer = calls[0]
    grid = (3, 3, 2)  # 17 frames, 96x64 pixels (this pipeline passes only video_coords for the geometry)
    sigma = float(pipeline.scheduler.sigmas[0])
    assert float(infer["timestep"].reshape(-1)[0]) == pytest.approx(sigma * 1000, rel=1e-5)
    noise = unpack_latents(infer["hidden_states"].float(), *grid, 1, 1)
    text = runner.hooks.encode_batch(bundle, {"captions": [PROMPT]}, runner.config)
    batch = {"latents": torch.randn_like(noise), "noise": noise, "sigmas": torch.tensor([sigma]),
             "is_i2v": torch.tensor([False]), "fps": torch.tensor([24.0]), "latents_std": torch.zeros_like(noise),
             **text}
    train = _train_call(runner, bundle, batch)
    torch.testing.assert_close(train["hidden_states"], infer["hidden_states"])
    torch.testing.assert_close(train["video_coords"], infer["video_coords"])
    assert "rope_interpolation_scale" not in train
    # and the positions differ from the scaled convention (the first latent frame keeps 0, later ones shift by 7/8)
    assert not torch.allclose(train["video_coords"][:, 0], _causal_reference_coords(1, grid, 24.0)[:, 0] + 7 / 24)


def test_auto_positions_follow_the_vae(prepared: Any) -> None:
    """auto: 0.9.0/0.9.1 VAEs (conv downsampling) -> scaled; 0.9.5+ VAEs (spatial/temporal blocks) -> causal."""
    from types import SimpleNamespace

    from vtrain_ltxvideo.loading import temporal_positions

    runner, bundle = prepared()
    assert bundle.meta["temporal_positions"] == "scaled"  # the tiny VAE downsamples with conv
    vae_095 = SimpleNamespace(config={"downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal")})
    assert temporal_positions(runner.config, vae_095) == "causal"
    assert temporal_positions(runner.config, SimpleNamespace(config={})) == "scaled"
