"""Encoding (pixel range, frame rule, text length), the i2v objective and the timestep shift."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from vtrain_ltxvideo.synthetic import SyntheticDataPlugin, clip_specs, render_clip


def test_pixels_are_scaled_to_minus_one_one(prepared: Any) -> None:
    runner, bundle = prepared()
    vae = bundle.components["vae"]
    seen: list[torch.Tensor] = []
    original = vae.encode

    def spy(video: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(video.detach().clone())
        return original(video, *args, **kwargs)

    vae.encode = spy
    pixels = render_clip(clip_specs(1)[0], 9, 64, 64).unsqueeze(0)  # (1, F, C, H, W) in [0, 1]
    pixels[0, 0, :, 0, 0] = 0.0
    pixels[0, 0, :, 0, 1] = 1.0
    latents = runner.hooks.encode_batch(bundle, {"pixels": pixels}, runner.config)["latents"]
    video = seen[0]
    assert video.shape == (1, 3, 9, 64, 64)  # (B, C, F, H, W) as the VAE wants it
    assert float(video.min()) == -1.0 and float(video.max()) == 1.0
    torch.testing.assert_close(video, pixels.permute(0, 2, 1, 3, 4) * 2 - 1)
    # normalised with the VAE's statistics and scaling factor, unpacked (B, C, F', H', W')
    raw = original(video).latent_dist.mode()
    mean, std = vae.latents_mean.view(1, -1, 1, 1, 1), vae.latents_std.view(1, -1, 1, 1, 1)
    torch.testing.assert_close(latents, (raw - mean) * vae.config.scaling_factor / std)
    assert latents.shape == (1, 8, 2, 2, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        runner.hooks.encode_batch(bundle, {"pixels": pixels * 255}, runner.config)


def test_frame_rule_and_sizes(prepared: Any) -> None:
    from vtrain_ltxvideo.checks import frames_for_clip, round_frame_count

    runner, bundle = prepared()
    clip = render_clip(clip_specs(1)[0], 12, 64, 96).unsqueeze(0)
    latents = runner.hooks.encode_batch(bundle, {"pixels": clip}, runner.config)["latents"]
    assert latents.shape[2:] == (2, 2, 3)  # 12 frames -> 9 (8k+1, trailing frames dropped) -> 2 latent frames
    assert [round_frame_count(n) for n in (1, 8, 9, 16, 17, 125, 126)] == [1, 1, 9, 9, 17, 121, 121]
    assert frames_for_clip(130, 125) == 121
    with pytest.raises(ValueError, match="the clip has 100 frames but 121 are needed"):
        frames_for_clip(100, 125)
    with pytest.raises(ValueError, match="multiples of 32"):
        runner.hooks.encode_batch(bundle, {"pixels": clip[..., :60]}, runner.config)


@pytest.mark.parametrize("length", [128, 16])
def test_text_embeddings_match_the_pipeline(prepared: Any, length: int) -> None:
    from diffusers import LTXPipeline

    runner, bundle = prepared({"tokenizer_max_length": length})
    captions = ["a red square moves from left to right", "a blue circle slides from top to bottom"]
    out = runner.hooks.encode_batch(bundle, {"captions": captions}, runner.config)
    assert out["prompt_embeds"].shape == (2, length, 32)
    assert out["prompt_attention_mask"].shape == (2, length)
    pipeline = LTXPipeline(scheduler=bundle.noise_scheduler, vae=bundle.components["vae"],
                           text_encoder=bundle.components["text_encoder"], tokenizer=bundle.components["tokenizer"],
                           transformer=bundle.model)
    embeds, mask, _, _ = pipeline.encode_prompt(captions, do_classifier_free_guidance=False, max_sequence_length=length)
    torch.testing.assert_close(out["prompt_embeds"], embeds)
    assert torch.equal(out["prompt_attention_mask"], mask)


def test_pack_matches_diffusers() -> None:
    from diffusers import LTXPipeline

    from vtrain_ltxvideo.encoding import pack_latents, unpack_latents

    x = torch.randn(2, 8, 3, 4, 6)
    for patch, patch_t in ((1, 1), (2, 1)):
        packed = pack_latents(x, patch, patch_t)
        assert torch.equal(packed, LTXPipeline._pack_latents(x, patch, patch_t))
        assert torch.equal(unpack_latents(packed, 3, 4 // patch, 6 // patch, patch, patch_t), x)


def _batch(runner: Any, bundle: Any, count: int = 2, is_i2v: bool | None = True) -> dict[str, Any]:
    from vtrain.data.base import collate

    plugin = SyntheticDataPlugin(count=count, frames=17, is_i2v=is_i2v)
    dataset = plugin.build_dataset(bundle=bundle, config=runner.config, family=runner.family)
    return collate([dataset[i] for i in range(count)])


def _spy_forward(model: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def before(_m: Any, _a: Any, kwargs: dict[str, Any]) -> None:
        seen.update(kwargs)

    def after(_m: Any, _a: Any, _k: Any, output: Any) -> None:
        output[0].retain_grad()
        seen["output"] = output[0]

    model.register_forward_pre_hook(before, with_kwargs=True)
    model.register_forward_hook(after, with_kwargs=True)
    return seen


def test_i2v_first_frame_is_clean_and_excluded_from_the_loss(prepared: Any) -> None:
    from vtrain.family import TrainState
    from vtrain_ltxvideo.encoding import pack_latents

    runner, bundle = prepared({"i2v_conditioning_probability": 1.0, "vae_latent_sampling": "mode"})
    batch = _batch(runner, bundle)
    x0 = batch["latents"]
    assert x0.shape[2] == 3  # 17 frames -> 3 latent frames
    tokens_per_frame = x0.shape[3] * x0.shape[4]
    seen = _spy_forward(bundle.model)
    torch.manual_seed(0)
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda shape: None))
    out.loss.backward()
    hidden, timestep = seen["hidden_states"], seen["timestep"]
    clean = pack_latents(x0, 1, 1)
    # the transformer input for first-frame tokens is the clean latent; the rest is noised
    torch.testing.assert_close(hidden[:, :tokens_per_frame], clean[:, :tokens_per_frame])
    assert not torch.allclose(hidden[:, tokens_per_frame:], clean[:, tokens_per_frame:])
    # per-token timesteps: 0 for the conditioning frame (as LTXImageToVideoPipeline), sigma*1000 elsewhere
    assert timestep.shape == (2, 3 * tokens_per_frame)
    assert torch.all(timestep[:, :tokens_per_frame] == 0) and torch.all(timestep[:, tokens_per_frame:] > 0)
    # zero loss contribution: no gradient reaches the prediction of first-frame tokens
    grad = seen["output"].grad
    assert torch.count_nonzero(grad[:, :tokens_per_frame]) == 0
    assert torch.count_nonzero(grad[:, tokens_per_frame:]) > 0
    assert out.metrics["i2v_fraction"] == 1.0


def test_text_to_video_samples_train_every_token(prepared: Any) -> None:
    from vtrain.family import TrainState

    runner, bundle = prepared()
    batch = _batch(runner, bundle, is_i2v=False)
    seen = _spy_forward(bundle.model)
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda shape: None))
    out.loss.backward()
    assert seen["timestep"].shape == (2,)
    assert torch.count_nonzero(seen["output"].grad.abs().sum(-1)) == seen["output"].shape[0] * seen["output"].shape[1]
    assert out.metrics["i2v_fraction"] == 0.0


def test_given_sigmas_and_noise_are_used_as_is(prepared: Any) -> None:
    from vtrain.family import TrainState
    from vtrain_ltxvideo.encoding import pack_latents

    runner, bundle = prepared({"vae_latent_sampling": "mode"})
    batch = _batch(runner, bundle, is_i2v=False)
    batch["sigmas"] = torch.tensor([0.25, 0.75])
    batch["noise"] = torch.randn_like(batch["latents"])
    state = TrainState(shift_for=lambda shape: 5.0)  # must not be applied to given sigmas
    seen = _spy_forward(bundle.model)
    torch.manual_seed(1)
    first = runner.hooks.compute_loss(bundle, batch, runner.config, state).loss
    torch.manual_seed(2)
    second = runner.hooks.compute_loss(bundle, batch, runner.config, state).loss
    assert torch.equal(first, second)
    torch.testing.assert_close(seen["timestep"], torch.tensor([250.0, 750.0]))
    s = batch["sigmas"].view(-1, 1, 1, 1, 1)
    expected_input = pack_latents((1 - s) * batch["latents"] + s * batch["noise"], 1, 1)
    torch.testing.assert_close(seen["hidden_states"], expected_input)
    target = pack_latents(batch["noise"] - batch["latents"], 1, 1)
    torch.testing.assert_close(first, ((seen["output"].float() - target) ** 2).mean())


def test_manual_shift_is_applied_to_drawn_sigmas(prepared: Any) -> None:
    from vtrain.family import TrainState

    runner, bundle = prepared({"flow_schedule_shift": 3.0, "vae_latent_sampling": "mode"})
    assert runner.hooks.schedule_shift(runner.config, (8, 3, 2, 2)) == 3.0
    batch = _batch(runner, bundle, is_i2v=False)
    seen = _spy_forward(bundle.model)
    state = TrainState(shift_for=lambda shape: runner.hooks.schedule_shift(runner.config, shape))
    torch.manual_seed(3)
    runner.hooks.compute_loss(bundle, batch, runner.config, state)
    torch.manual_seed(3)
    sigma = torch.sigmoid(torch.randn(2))  # logit_norm, mean 0, std 1
    shifted = 3.0 * sigma / (1 + 2.0 * sigma)
    torch.testing.assert_close(seen["timestep"], shifted * 1000)


def test_auto_shift_from_latent_tokens(prepared: Any) -> None:
    runner, _ = prepared({"flow_schedule_auto_shift": True})
    # tiny scheduler = LTX-Video's: base_shift 0.95, max_shift 2.05, seq lens 1024..4096; patch sizes 1
    # 768x512x121 frames -> latents (128, 16, 16, 24) -> 16*16*24 = 6144 tokens
    mu = 0.95 + (2.05 - 0.95) / (4096 - 1024) * (6144 - 1024)
    assert runner.hooks.schedule_shift(runner.config, (128, 16, 16, 24)) == pytest.approx(math.exp(mu))
    assert math.exp(mu) == pytest.approx(16.1736, rel=1e-4)
    # 512x768x49 -> (128, 7, 24, 16) = 2688 tokens; 64x64x9 -> 8 tokens (below the base: smaller shift)
    assert runner.hooks.schedule_shift(runner.config, (128, 7, 24, 16)) == pytest.approx(
        math.exp(0.95 + 1.1 / 3072 * (2688 - 1024)))
    assert runner.hooks.schedule_shift(runner.config, (8, 2, 2, 2)) == pytest.approx(math.exp(0.95 + 1.1 / 3072 * -1016))


def test_hidden_state_capture(prepared: Any) -> None:
    from vtrain.family import HiddenStateCapture, TrainState

    runner, bundle = prepared({"gradient_checkpointing": True})
    assert isinstance(runner.family, HiddenStateCapture)
    batch = _batch(runner, bundle)
    with runner.family.capture_hidden_states(bundle, 1) as captured:
        out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda s: None))
        out.loss.backward()
    assert captured.hidden_states.shape == (2, 3, 4, 32)  # (batch, latent frames, tokens per frame, dim)
    assert captured.hidden_states.requires_grad


def test_i2v_conditioning_probability(prepared: Any) -> None:
    """0 trains every is_i2v sample as text-to-video; in between, a seeded share of the i2v samples only."""
    from vtrain.family import TrainState
    from vtrain_ltxvideo.loss import i2v_mask

    runner, bundle = prepared({"i2v_conditioning_probability": 0.0})
    batch = _batch(runner, bundle)
    seen = _spy_forward(bundle.model)
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda shape: None))
    assert out.metrics["i2v_fraction"] == 0.0 and seen["timestep"].shape == (2,)

    x0 = torch.zeros(400, 1, 3, 1, 1)
    flags = torch.arange(400) % 2 == 0  # half the samples come from an i2v dataset
    torch.manual_seed(0)
    mask = i2v_mask({"is_i2v": flags}, x0, 0.5)
    assert not bool(mask[~flags].any())  # never for a text-to-video sample
    assert 0.4 < float(mask[flags].float().mean()) < 0.6
    assert bool(i2v_mask({"is_i2v": flags}, x0, 1.0).eq(flags).all())


def test_rope_scale_follows_the_clip_frame_rate() -> None:
    import torch

    from vtrain_ltxvideo.family import batch_fps

    assert batch_fps({}, 25) == 25
    assert batch_fps({"fps": torch.tensor([30.0, 24.0])}, 25) == 30.0
    assert batch_fps({"fps": torch.tensor([0.0])}, 25) == 25  # unknown (an image): the family's rate


@pytest.mark.parametrize("mode", ["sample", "mode"])
def test_vae_latent_sampling(prepared: Any, mode: str) -> None:
    """The cache holds the posterior's mean and std (normalised); ``sample`` trains on mean + std * eps drawn
    from the torch RNG at each use (the reference's latent_dist.sample()), ``mode`` on the mean."""
    from vtrain.family import TrainState
    from vtrain_ltxvideo.encoding import pack_latents

    runner, bundle = prepared({"vae_latent_sampling": mode})
    batch = _batch(runner, bundle, is_i2v=False)
    mean, std = batch["latents"], batch["latents_std"]
    assert std.shape == mean.shape and float(std.min()) > 0
    vae = bundle.components["vae"]
    pixels = render_clip(clip_specs(2)[0], 17, 64, 64).unsqueeze(0)
    posterior = vae.encode(pixels.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist
    torch.testing.assert_close(std[:1], posterior.std * vae.config.scaling_factor
                               / vae.latents_std.view(1, -1, 1, 1, 1))
    batch["sigmas"] = torch.zeros(2)
    seen = _spy_forward(bundle.model)
    torch.manual_seed(3)
    runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda shape: None))
    torch.manual_seed(3)
    expected = mean + std * torch.randn_like(mean) if mode == "sample" else mean
    torch.testing.assert_close(seen["hidden_states"], pack_latents(expected, 1, 1))
