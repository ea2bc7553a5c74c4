"""Training modes per modality (generated / frozen / off) and video conditions on the tiny model.

Every mode trains a few steps on synthetic clips with sound; the loss of each generated modality falls on a
seeded run; a frozen modality provably gets σ = 0 (clean input, timestep 0) and no loss term.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vtrain_ltx2.synthetic import SyntheticAVPlugin

MODES = {
    "t2av": {},
    "video_only": {"ltx2_audio": "off"},
    "audio_only": {"ltx2_video": "off"},
    "a2v": {"ltx2_audio": "frozen"},
    "v2a": {"ltx2_video": "frozen"},
    "i2v": {"ltx2_i2v_probability": 1.0},
    "extension": {"ltx2_extension_frames": 1},
    "ic_lora": {"ltx2_ic_lora": True},
}


def _record(model: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def before(_m: Any, _a: Any, kwargs: dict[str, Any]) -> None:
        calls.append({k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()})

    model.register_forward_pre_hook(before, with_kwargs=True)
    return calls


def _fixed_losses(runner: Any, bundle: Any, dataset: Any) -> dict[str, float]:
    """Mean of each logged term at fixed sigmas and noise over the dataset."""
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    generator = torch.Generator().manual_seed(123)
    totals: dict[str, float] = {}
    with torch.no_grad():
        for index in range(len(dataset)):
            batch = collate([dataset[index]])
            for sigma in (0.3, 0.7):
                batch["sigmas"] = torch.tensor([sigma])
                batch["noise"] = torch.randn(batch["latents"].shape, generator=generator)
                if "audio_latents" in batch:
                    batch["audio_noise"] = torch.randn(batch["audio_latents"].shape, generator=generator)
                out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda s: None))
                for name, value in out.terms.items():
                    totals[name] = totals.get(name, 0.0) + float(value)
    return totals


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_trains_and_its_generated_losses_fall(prepared: Any, mode: str) -> None:
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    overrides = {**MODES[mode], "ltx2_lora_targets": "all", "lora_rank": 4}
    runner, bundle = prepared(overrides)
    dataset = SyntheticAVPlugin(count=4, frames=9, reference_scale=2 if mode == "ic_lora" else 0).build_dataset(
        bundle=bundle, config=runner.config, family=runner.family)
    before = _fixed_losses(runner, bundle, dataset)
    expected = {"video_flow"} if overrides.get("ltx2_audio") in ("off", "frozen") else \
        {"audio_flow"} if overrides.get("ltx2_video") in ("off", "frozen") else {"video_flow", "audio_flow"}
    assert set(before) == expected
    optimizer = torch.optim.AdamW([p for _, p in bundle.trainable_named_parameters()], lr=3e-3)
    torch.manual_seed(0)
    calls = _record(bundle.model)
    state = TrainState(shift_for=lambda shape: None)
    for step in range(12):
        out = runner.hooks.compute_loss(bundle, collate([dataset[(2 * step) % 4], dataset[(2 * step + 1) % 4]]),
                                        runner.config, state)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = _fixed_losses(runner, bundle, dataset)
    for name in expected:
        assert after[name] < 0.9 * before[name], (mode, name, before, after)
    call = calls[0]
    if overrides.get("ltx2_audio") == "frozen":
        assert float(call["audio_timestep"].abs().max()) == 0 and float(call["audio_sigma"].abs().max()) == 0
        torch.testing.assert_close(call["audio_hidden_states"], collate([dataset[0], dataset[1]])["audio_latents"])
    if overrides.get("ltx2_video") == "frozen":
        assert float(call["timestep"].abs().max()) == 0 and float(call["sigma"].abs().max()) == 0
    if "off" in overrides.values():
        assert call["isolate_modalities"] is True
    if mode in ("i2v", "extension"):
        per_frame = call["height"] * call["width"]
        first = call["timestep"][:, :per_frame]
        assert torch.all(first == 0) and torch.all(call["timestep"][:, per_frame:] > 0)
    if mode == "ic_lora":
        target = call["num_frames"] * call["height"] * call["width"]
        assert call["hidden_states"].shape[1] > target and torch.all(call["timestep"][:, target:] == 0)


def test_frozen_modality_gets_no_gradient_from_its_own_loss(prepared: Any) -> None:
    """v2a: the video prediction is out of the loss, so its output head gets no gradient; audio's does."""
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    runner, bundle = prepared({"ltx2_video": "frozen", "model_type": "full"})
    dataset = SyntheticAVPlugin(count=2, frames=9).build_dataset(bundle=bundle, config=runner.config,
                                                                 family=runner.family)
    out = runner.hooks.compute_loss(bundle, collate([dataset[0], dataset[1]]), runner.config,
                                    TrainState(shift_for=lambda s: None))
    out.loss.backward()
    assert set(out.terms) == {"audio_flow"}
    assert bundle.model.proj_out.weight.grad is None or float(bundle.model.proj_out.weight.grad.abs().max()) == 0
    assert float(bundle.model.audio_proj_out.weight.grad.abs().max()) > 0


def test_loss_weights_scale_each_term(prepared: Any) -> None:
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    runner, bundle = prepared({"ltx2_video_loss_weight": 0.5, "ltx2_audio_loss_weight": 2.0})
    dataset = SyntheticAVPlugin(count=2, frames=9).build_dataset(bundle=bundle, config=runner.config,
                                                                 family=runner.family)
    batch = collate([dataset[0], dataset[1]])
    torch.manual_seed(3)
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(shift_for=lambda s: None))
    assert float(out.terms["video_flow"]) == pytest.approx(0.5 * float(out.metrics["video_loss"]), rel=1e-5)
    assert float(out.terms["audio_flow"]) == pytest.approx(2.0 * float(out.metrics["audio_loss"]), rel=1e-5)
    assert float(out.loss) == pytest.approx(float(out.terms["video_flow"] + out.terms["audio_flow"]), rel=1e-5)


def test_clips_without_sound_train_video_only(prepared: Any) -> None:
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    runner, bundle = prepared()
    dataset = SyntheticAVPlugin(count=2, frames=9, with_audio=False).build_dataset(
        bundle=bundle, config=runner.config, family=runner.family)
    calls = _record(bundle.model)
    out = runner.hooks.compute_loss(bundle, collate([dataset[0], dataset[1]]), runner.config,
                                    TrainState(shift_for=lambda s: None))
    assert set(out.terms) == {"video_flow"} and calls[0]["isolate_modalities"] is True


@pytest.mark.parametrize(("overrides", "key"), [
    ({"ltx2_video": "frozen", "ltx2_audio": "frozen"}, "ltx2_video"),
    ({"ltx2_video": "frozen", "ltx2_i2v_probability": 0.5}, "ltx2_i2v_probability"),
    ({"ltx2_lora_targets": "video_attention,attn9"}, "ltx2_lora_targets"),
    ({"ltx2_text_max_length": 30}, "ltx2_text_max_length"),
    ({"validation_num_video_frames": 10}, "validation_num_video_frames"),
])
def test_impossible_modes_are_refused_at_configure_time(ltx2_config: dict[str, Any], overrides: dict[str, Any],
                                                        key: str) -> None:
    from vtrain.errors import ConfigError
    from vtrain.runner import Runner

    with pytest.raises(ConfigError) as info:
        Runner.from_config({**ltx2_config, **overrides})
    assert key in str(info.value)


@pytest.mark.parametrize(("overrides", "key"), [
    ({"ltx2_audio": "frozen"}, "ltx2_audio"),
    ({"ltx2_video": "frozen"}, "ltx2_audio"),
    ({"ltx2_ic_lora": True}, "ltx2_ic_lora"),
])
def test_modes_are_checked_against_the_data(ltx2_config: dict[str, Any], overrides: dict[str, Any], key: str) -> None:
    """a2v / v2a need sound in every clip, IC-LoRA a reference for every clip: refused before training, with the fix."""
    from vtrain.errors import ConfigError
    from vtrain.runner import Runner

    runner = Runner.from_config({**ltx2_config, **overrides, "max_train_steps": 1},
                                plugins=[SyntheticAVPlugin(count=2, frames=9, with_audio=False)])
    with pytest.raises(ConfigError) as info:
        runner.run()
    assert key in str(info.value) and "sample 0" in str(info.value)
