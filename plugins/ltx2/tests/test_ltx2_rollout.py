"""Rollout (scheduled sampling) on LTX-2: the family's MultiStreamVelocityPredictor capability equals the training
forward in every mode, the video and audio streams are rolled out together (a one-step Euler rollout is the
hand-computed step on both), frozen streams, first-frame conditions and IC-LoRA references stay clean in every
rollout forward, and a seeded ltx2 + rollout run trains to the end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from vtrain_ltx2.synthetic import SyntheticAVPlugin

pytest.importorskip("vtrain_rollout")

MODES = {
    "t2av": {},
    "video_only": {"ltx2_audio": "off"},
    "audio_only": {"ltx2_video": "off"},
    "a2v": {"ltx2_audio": "frozen"},
    "v2a": {"ltx2_video": "frozen"},
    "i2v": {"ltx2_i2v_probability": 1.0},
    "extension": {"ltx2_extension_frames": 1, "ltx2_extension_from": "end"},
    "ic_lora": {"ltx2_ic_lora": True},
}
ROLLOUT = {"scheduled_sampling_max_step_offset": 3, "scheduled_sampling_probability": 1.0}


def _batch(runner: Any, bundle: Any, mode: str, count: int = 2) -> dict[str, Any]:
    from vtrain.data.base import collate

    torch.manual_seed(5)
    dataset = SyntheticAVPlugin(count=count, frames=9, reference_scale=2 if mode == "ic_lora" else 0).build_dataset(
        bundle=bundle, config=runner.config, family=runner.family)
    return collate([dataset[i] for i in range(count)])


def _record(model: Any) -> tuple[list[dict[str, Any]], Any]:
    calls: list[dict[str, Any]] = []

    def before(_m: Any, _a: Any, kwargs: dict[str, Any]) -> None:
        calls.append({"grad": torch.is_grad_enabled(),
                      **{k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}})

    return calls, model.register_forward_pre_hook(before, with_kwargs=True)


@pytest.mark.parametrize("mode", list(MODES))
def test_velocity_is_the_training_prediction_in_every_mode(prepared: Any, mode: str) -> None:
    from vtrain.family import MultiStreamVelocityPredictor, TrainState
    from vtrain.flow_matching import noisy_latents

    runner, bundle = prepared(MODES[mode])
    family, config = runner.family, runner.config
    assert isinstance(family, MultiStreamVelocityPredictor)
    batch = _batch(runner, bundle, mode)
    streams = family.latent_streams(bundle, batch, config)
    expected = {"t2av": ("video", "audio"), "video_only": ("video",), "audio_only": ("audio",), "a2v": ("video",),
                "v2a": ("audio",)}.get(mode, ("video", "audio"))
    assert tuple(s.name for s in streams) == expected
    state = TrainState(shift_for=lambda shape: None)
    torch.manual_seed(0)
    drawn = family.draw_flow_inputs(bundle, dict(batch), config, state)
    # a rollout-like input (not the analytic one) for every generated stream: the loss and the predictor agree on it
    given = {s.name: noisy_latents(batch[s.latents].float(), drawn[s.noise], drawn["sigmas"]) + 0.1
             for s in streams}
    full = {**batch, **drawn, **{s.noisy_latents: given[s.name] for s in streams}}
    out = family.compute_loss(bundle, full, config, state)
    with torch.no_grad():
        velocities = family.predict_stream_velocities(bundle, {**batch, **drawn}, config, given, drawn["sigmas"])
    for stream in streams:
        torch.testing.assert_close(velocities[stream.name], out.predictions[stream.name].detach(), rtol=1e-4,
                                   atol=1e-5)
    masks = family.stream_condition_masks(bundle, {**batch, **drawn}, config)
    if mode in ("i2v", "extension"):
        frame = 0 if mode == "i2v" else -1
        assert set(masks) == {"video"} and torch.all(masks["video"][:, :, frame] == 1)
        assert float(masks["video"].sum()) == masks["video"][:, :, frame].numel()
    else:
        assert masks == {}


def test_one_euler_step_moves_both_streams_together(prepared: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """k = 1 for every sample: the rolled-out input of each stream is x_src + (σ - σ_src) v(x_src, σ_src), with one
    model call for both streams, without gradients; the loss is then trained on that input."""
    import vtrain_rollout.rollout as rollout_module
    from vtrain.family import TrainState
    from vtrain.flow_matching import noisy_latents

    monkeypatch.setattr(rollout_module, "draw_steps", lambda size, p, top, device, strategy="uniform": torch.ones(size, dtype=torch.long))
    runner, bundle = prepared({**ROLLOUT, "scheduled_sampling_sampler": "euler",
                               "scheduled_sampling_reflexflow": False})
    family, config = runner.family, runner.config
    batch = _batch(runner, bundle, "t2av")
    seen: list[dict[str, Any]] = []
    original = family.predict_stream_velocities

    def spy(bundle_: Any, sub: dict[str, Any], config_: Any, noisy: Any, sigmas: torch.Tensor) -> Any:
        velocities = original(bundle_, sub, config_, noisy, sigmas)
        seen.append({"grad": torch.is_grad_enabled(), "x": {k: v.clone() for k, v in noisy.items()},
                     "sigmas": sigmas.clone(), "v": velocities})
        return velocities

    monkeypatch.setattr(family, "predict_stream_velocities", spy)
    fed: list[dict[str, Any]] = []
    original_loss = family.compute_loss

    def loss_spy(bundle_: Any, batch_: dict[str, Any], config_: Any, state_: Any) -> Any:
        fed.append(dict(batch_))
        return original_loss(bundle_, batch_, config_, state_)

    monkeypatch.setattr(family, "compute_loss", loss_spy)
    torch.manual_seed(7)
    out = runner.hooks.compute_loss(bundle, batch, config, TrainState(max_steps=4, shift_for=lambda s: None))
    assert out.metrics["rollout_fraction"] == 1.0 and out.metrics["rollout_mean_k"] == 1.0
    assert len(seen) == 1 and not seen[0]["grad"] and set(seen[0]["x"]) == {"video", "audio"}
    inner = fed[0]
    sigmas, source = inner["sigmas"], seen[0]["sigmas"]
    torch.testing.assert_close(source, (sigmas + 1 / 1000).clamp(max=0.999))
    for name, latents, noise, key in (("video", "latents", "noise", "noisy_latents"),
                                      ("audio", "audio_latents", "audio_noise", "audio_noisy_latents")):
        start = noisy_latents(batch[latents].float(), inner[noise], source)
        torch.testing.assert_close(seen[0]["x"][name], start)
        shape = (-1,) + (1,) * (start.dim() - 1)
        expected = start + (sigmas - source).view(shape) * seen[0]["v"][name]
        torch.testing.assert_close(inner[key], expected, rtol=1e-5, atol=1e-6)
    assert not any(key in batch for key in ("noisy_latents", "audio_noisy_latents", "sigmas", "audio_noise"))
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("mode", ["a2v", "i2v", "ic_lora"])
def test_fixed_parts_stay_clean_in_every_rollout_forward(prepared: Any, mode: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A frozen audio stream, the clean first frame and IC-LoRA reference tokens are clean at timestep 0 in each
    no-grad rollout forward (two RK4 steps of both samples: 8 forwards) and in the training forward."""
    from diffusers import LTX2Pipeline

    import vtrain_rollout.rollout as rollout_module
    from vtrain.family import TrainState

    monkeypatch.setattr(rollout_module, "draw_steps", lambda size, p, top, device, strategy="uniform": torch.full((size,), 2))
    runner, bundle = prepared({**MODES[mode], **ROLLOUT, "scheduled_sampling_sampler": "rk4"})
    batch = _batch(runner, bundle, mode)
    calls, handle = _record(bundle.model)
    torch.manual_seed(1)
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(max_steps=4, shift_for=lambda s: None))
    handle.remove()
    assert out.metrics["rollout_fraction"] == 1.0
    assert [call["grad"] for call in calls] == [False] * 8 + [True]
    clean_tokens = LTX2Pipeline._pack_latents(batch["latents"].float(), 1, 1)
    target = clean_tokens.shape[1]
    per_frame = target // batch["latents"].shape[2]
    for call in calls:
        assert not torch.equal(call["hidden_states"][:, :target], clean_tokens)  # the generated part is noised
        if mode == "a2v":
            torch.testing.assert_close(call["audio_hidden_states"], batch["audio_latents"])
            assert float(call["audio_timestep"].abs().max()) == 0
        if mode == "i2v":
            assert torch.all(call["timestep"][:, :per_frame] == 0) and torch.all(call["timestep"][:, per_frame:] > 0)
            torch.testing.assert_close(call["hidden_states"][:, :per_frame], clean_tokens[:, :per_frame])
        if mode == "ic_lora":
            references = LTX2Pipeline._pack_latents(batch["reference_latents"].float(), 1, 1)
            assert call["hidden_states"].shape[1] == target + references.shape[1]
            assert torch.all(call["timestep"][:, target:] == 0)
            torch.testing.assert_close(call["hidden_states"][:, target:], references)


def test_seeded_ltx2_rollout_run_trains_to_the_end(ltx2_config: dict[str, Any], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from vtrain.runner import Runner

    def run(name: str, extra: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
        config = {**ltx2_config, "max_train_steps": 3, "output_dir": str(tmp_path / name), **extra}
        result = Runner.from_config(config, plugins=[SyntheticAVPlugin(count=4, frames=9)]).run()
        assert result.steps == 3 and math.isfinite(result.final_loss)
        out = Path(config["output_dir"])
        return (load_file(str(out / "pytorch_lora_weights.safetensors")),
                [json.loads(line) for line in (out / "metrics.jsonl").open()])

    plain, _ = run("plain", {})
    weights, metrics = run("rollout", {**ROLLOUT, "ltx2_i2v_probability": 0.5})
    again, _ = run("again", {**ROLLOUT, "ltx2_i2v_probability": 0.5})
    assert len(metrics) == 3
    assert all({"rollout_fraction", "rollout_mean_k", "loss/reflexflow_adr", "loss/video_flow", "loss/audio_flow"}
               <= set(row) for row in metrics)
    assert all(math.isfinite(row["loss"]) for row in metrics)
    assert any(row["rollout_mean_k"] > 0 for row in metrics)
    assert any(not torch.equal(weights[k], plain[k]) for k in plain)  # rollout changes the run
    assert all(torch.equal(weights[k], again[k]) for k in weights)  # seeded: reproducible
