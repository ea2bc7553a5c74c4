"""Rollout on the tiny LTX-Video model: off is bit-identical to no plugin, a one-step Euler rollout is the
hand-computed Euler step, the rollout keeps the i2v frame and the caption embeddings, runs without gradients
in the training dtype before CREPA observes the training forward, and ReflexFlow's terms are what they say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from rollout_helpers import BatchRecorder, prepare
from safetensors.torch import load_file

from vtrain.family import TrainState
from vtrain.flow_matching import noisy_latents


def _run(config: dict[str, Any], **kwargs: Any) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    Runner.from_config(config, plugins=[SyntheticDataPlugin(count=4, frames=9)], **kwargs).run()
    out = Path(config["output_dir"])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    return load_file(str(out / "pytorch_lora_weights.safetensors")), metrics


def test_offset_zero_or_probability_zero_is_bit_identical_to_no_plugin(rollout_config: dict, tmp_path: Path) -> None:
    base = {**rollout_config, "max_train_steps": 3}
    plain = {k: v for k, v in base.items() if not k.startswith("scheduled_sampling_")}
    reference, reference_rows = _run({**plain, "output_dir": str(tmp_path / "blocked")}, blocked=["rollout"])
    runs = {
        "offset0": {**base, "scheduled_sampling_max_step_offset": 0},
        "probability0": {**base, "scheduled_sampling_max_step_offset": 5, "scheduled_sampling_probability": 0.0},
        "on": base,
    }
    results = {name: _run({**config, "output_dir": str(tmp_path / name)}) for name, config in runs.items()}
    for name in ("offset0", "probability0"):
        weights, metrics = results[name]
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference), name
        assert [r["loss"] for r in metrics] == [r["loss"] for r in reference_rows], name
        assert not any("rollout_fraction" in row for row in metrics)
    weights, metrics = results["on"]  # the comparison can fail: rollout on changes the run
    assert any(not torch.equal(weights[k], reference[k]) for k in reference)
    assert all({"rollout_fraction", "rollout_mean_k", "rollout_seconds", "loss/reflexflow_adr"} <= set(row)
               for row in metrics)
    assert all(0 <= row["rollout_mean_k"] <= 3 and row["rollout_seconds"] > 0 for row in metrics)


def test_one_euler_step_is_the_hand_computed_step(rollout_config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import vtrain_rollout.rollout as rollout_module

    monkeypatch.setattr(rollout_module, "draw_steps", lambda size, p, top, device, strategy="uniform": torch.ones(size, dtype=torch.long))
    recorder = BatchRecorder()
    config = {**rollout_config, "scheduled_sampling_sampler": "euler", "scheduled_sampling_reflexflow": False}
    runner, bundle, batch = prepare(config, plugins=[recorder])
    family = runner.family
    seen: list[dict[str, Any]] = []
    original = family.predict_velocity

    def spy(bundle_: Any, sub: dict[str, Any], x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        seen.append({"grad": torch.is_grad_enabled(), "embeds": sub["prompt_embeds"].clone(), "x": x.clone()})
        return original(bundle_, sub, x, sigmas)

    monkeypatch.setattr(family, "predict_velocity", spy)
    dtypes: list[torch.dtype] = []
    handle = bundle.model.register_forward_pre_hook(lambda _m, _a, kw: dtypes.append(kw["hidden_states"].dtype),
                                                    with_kwargs=True)
    torch.manual_seed(7)
    given_noise = torch.randn_like(batch["latents"])
    batch["noise"] = given_noise  # a batch may carry its own noise: used, and left in the batch
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(max_steps=4, shift_for=lambda s: None))
    assert batch["noise"] is given_noise
    handle.remove()
    assert out.metrics["rollout_fraction"] == 1.0 and out.metrics["rollout_mean_k"] == 1.0
    assert "reflexflow_adr" not in out.terms
    assert not any(key in batch for key in ("noisy_latents", "sigmas", "i2v_mask"))  # the caller's batch as it was

    fed = recorder.batches[-1]
    x0, noise, sigmas = fed["latents"].float(), fed["noise"], fed["sigmas"]
    assert fed["i2v_mask"].all() and torch.equal(noise, given_noise)
    source = sigmas + 1 / 1000
    start = noisy_latents(x0, noise, source)
    with torch.no_grad():
        velocity = original(bundle, fed, start, source)
    expected = start + (sigmas - source).view(-1, 1, 1, 1, 1) * velocity
    expected[:, :, 0] = x0[:, :, 0]  # image-to-video: the first latent frame stays clean
    torch.testing.assert_close(fed["noisy_latents"], expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(fed["noisy_latents"][:, :, 0], x0[:, :, 0])

    assert len(seen) == 1 and not seen[0]["grad"]  # one batched forward, without gradients
    assert torch.equal(seen[0]["embeds"], batch["prompt_embeds"])  # the embeddings the training pass uses
    assert torch.equal(seen[0]["x"], start)
    assert dtypes == [bundle.meta["compute_dtype"]] * 2  # rollout and training forward in the training dtype


def test_rollout_runs_before_crepa_observes_the_training_forward(rollout_config: dict, tiny_dinov2_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = {**rollout_config, "crepa_enabled": True, "crepa_block_index": 1, "crepa_encoder": str(tiny_dinov2_dir),
              "crepa_encoder_image_size": 16}
    runner, bundle, batch = prepare(config)
    family = runner.family
    events: list[str] = []
    predict, capture = family.predict_velocity, family.capture_hidden_states

    def spy_predict(*args: Any) -> torch.Tensor:
        events.append("rollout forward")
        return predict(*args)

    class SpyCapture:
        def __init__(self, *args: Any) -> None:
            self.inner = capture(*args)

        def __enter__(self) -> Any:
            events.append("capture on")
            self.captured = self.inner.__enter__()
            return self.captured

        def __exit__(self, *exc: Any) -> Any:
            events.append("capture off")
            return self.inner.__exit__(*exc)

    monkeypatch.setattr(family, "predict_velocity", spy_predict)
    monkeypatch.setattr(family, "capture_hidden_states", SpyCapture)
    monkeypatch.setattr("vtrain_rollout.rollout.draw_steps",
                        lambda size, p, top, device, strategy="uniform": torch.full((size,), 2, dtype=torch.long))
    torch.manual_seed(2)
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(max_steps=4, shift_for=lambda s: None))
    assert events == ["rollout forward", "rollout forward", "capture on", "capture off"]
    assert {"flow", "crepa", "reflexflow_adr"} <= set(out.terms)
    out.loss.backward()  # CREPA's term was built on the training forward, which has a graph
    head = bundle.extra_trainables["crepa_head"]
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in head.parameters())


def test_reflexflow_weight_and_anti_drift_term(rollout_config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain_rollout.reflexflow import anti_drift

    recorder = BatchRecorder()
    config = {**rollout_config, "scheduled_sampling_sampler": "euler", "scheduled_sampling_reflexflow_alpha": 2.0,
              "scheduled_sampling_reflexflow_beta1": 3.0, "scheduled_sampling_reflexflow_beta2": 0.5}
    runner, bundle, batch = prepare(config, plugins=[recorder])
    monkeypatch.setattr("vtrain_rollout.rollout.draw_steps", lambda size, p, top, device, strategy="uniform": torch.tensor([0, 3]))
    torch.manual_seed(4)
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(max_steps=4, shift_for=lambda s: None))
    fed = recorder.batches[-1]
    weight, x0 = fed["loss_weight"], fed["latents"].float()
    assert weight.shape == x0.shape
    assert torch.equal(weight[0], torch.ones_like(weight[0]))  # not rolled out: plain loss
    free = weight[1, :, 1:]  # the clean i2v frame is not free
    assert float(free.mean()) == pytest.approx(0.5 * (1 + 2.0), rel=1e-5)  # beta2 * (1 + alpha * mean 1)
    assert float(free.min()) >= 0.5
    analytic = noisy_latents(x0, fed["noise"], fed["sigmas"])
    bias = (fed["noisy_latents"] - analytic)[1, :, 1:].abs()
    assert float(out.metrics["reflexflow_exposure"]) == pytest.approx(float(bias.mean()), rel=1e-5)
    mask = runner.family.fixed_condition_mask(bundle, fed)
    expected = 3.0 * anti_drift(out.prediction, fed["noisy_latents"], x0, fed["sigmas"], torch.tensor([False, True]),
                                mask)
    torch.testing.assert_close(out.terms["reflexflow_adr"], expected)
    assert out.metrics["rollout_fraction"] == 0.5 and out.metrics["rollout_mean_k"] == 3.0


def test_anti_drift_compares_directions_only() -> None:
    from vtrain_rollout.reflexflow import anti_drift, compensation_weight

    x0, x_hat = torch.zeros(2, 3, 2, 2, 2), torch.randn(2, 3, 2, 2, 2)
    sigmas, rolled = torch.tensor([0.5, 0.25]), torch.tensor([True, True])
    towards_clean = x_hat / sigmas.view(-1, 1, 1, 1, 1)
    assert float(anti_drift(7 * towards_clean, x_hat, x0, sigmas, rolled, None)) == pytest.approx(0.0, abs=1e-6)
    assert float(anti_drift(-towards_clean, x_hat, x0, sigmas, rolled, None)) == pytest.approx(4.0, abs=1e-5)
    weight = compensation_weight(x_hat, x_hat, rolled, None, alpha=1.0, beta2=1.0)  # no exposure bias: weight 1
    assert torch.equal(weight, torch.ones_like(weight))


@pytest.mark.parametrize("settings", [
    {"base_model_precision": "int8-torchao"},
    {"enable_group_offload": True, "group_offload_type": "block_level", "gradient_checkpointing": True},
], ids=["int8-torchao", "group-offload"])
def test_rollout_trains_on_quantised_and_group_offloaded_bases(settings: dict, rollout_config: dict) -> None:
    from vtrain.testing.helpers import train_steps

    def losses(extra: dict) -> list[float]:
        runner, bundle, batch = prepare({**rollout_config, **extra})
        samples = [{k: v[i] for k, v in batch.items() if hasattr(v, "__getitem__")} for i in range(2)]
        torch.manual_seed(3)
        return train_steps(runner, bundle, samples, steps=3, lr=3e-3)

    trained = losses(settings)
    assert all(torch.isfinite(torch.tensor(trained)))
    if "enable_group_offload" in settings:  # the rollout forwards go through the offload hooks unchanged
        plain = losses({"gradient_checkpointing": True})
        assert trained == pytest.approx(plain, rel=1e-4, abs=1e-5)


def test_evaluation_calls_are_not_rolled_out(rollout_config: dict) -> None:
    """Fixed sigmas (the evaluation loss) or no gradients: the model is scored as it is, no RNG is drawn."""
    runner, bundle, batch = prepare(rollout_config)
    state = TrainState(max_steps=4, shift_for=lambda s: None)
    fixed = {**batch, "sigmas": torch.tensor([0.3, 0.6]), "noise": torch.randn_like(batch["latents"])}
    before = torch.get_rng_state()
    out = runner.hooks.compute_loss(bundle, dict(fixed), runner.config, state)
    assert "rollout_fraction" not in out.metrics
    assert torch.equal(torch.get_rng_state(), before)  # i2v probability 1: nothing at all was drawn
    with torch.no_grad():
        out = runner.hooks.compute_loss(bundle, dict(batch), runner.config, state)
    assert "rollout_fraction" not in out.metrics


def test_rollout_forwards_run_in_the_training_dtype(rollout_config: dict) -> None:
    config = {**rollout_config, "base_model_default_dtype": "bf16", "mixed_precision": "bf16"}
    runner, bundle, batch = prepare(config)
    dtypes: list[torch.dtype] = []
    grads: list[bool] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        dtypes.append(kwargs["hidden_states"].dtype)
        grads.append(torch.is_grad_enabled())

    handle = bundle.model.register_forward_pre_hook(record, with_kwargs=True)
    torch.manual_seed(1)
    out = runner.hooks.compute_loss(bundle, batch, runner.config, TrainState(max_steps=4, shift_for=lambda s: None))
    handle.remove()
    assert out.metrics["rollout_fraction"] > 0 and torch.isfinite(out.loss)
    assert len(dtypes) > 1 and set(dtypes) == {torch.bfloat16}
    assert grads[:-1] == [False] * (len(grads) - 1) and grads[-1]  # rollout without, training with gradients
