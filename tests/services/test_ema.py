"""EMA: follows its decay, drives validation per ema_validation, survives an interrupted run bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vtrain.hookspecs import hookimpl


def _config(base: dict, **extra) -> dict:
    return dict(base, use_ema=True, **extra)


class Recorder:
    """Records the trainable weights at the start and after every update."""

    name = "recorder"

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    @hookimpl
    def on_run_start(self, run):
        self.weights.append({k: p.detach().clone() for k, p in run.bundle.trainable_named_parameters()})

    @hookimpl(trylast=True)
    def on_step_end(self, run, step):
        self.weights.append({k: p.detach().clone() for k, p in run.bundle.trainable_named_parameters()})


def test_ema_follows_the_decay_and_interval(tinyflow_config, service_runner, tmp_path):
    recorder = Recorder()
    config = _config(tinyflow_config, max_train_steps=4, ema_decay=0.75, ema_update_interval=2,
                     checkpoint_step_interval=4)
    service_runner(config, plugins=(recorder,)).run()
    saved = torch.load(tmp_path / "out" / "checkpoint-4" / "statefuls.pt", weights_only=False)["ema"]
    assert saved["updates"] == 2
    w = recorder.weights
    for name, shadow in saved["shadow"].items():
        expected = 0.75 * (0.75 * w[0][name] + 0.25 * w[2][name]) + 0.25 * w[4][name]
        torch.testing.assert_close(shadow, expected.float(), rtol=0, atol=1e-6)
        assert not torch.equal(shadow, w[4][name].float())  # it lags the live weights
    # the ema/ copy of the adapter holds the average; the adapter itself the live weights
    ema_adapter = load_file(str(tmp_path / "out" / "ema" / "adapter_model.safetensors"))
    live_adapter = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    assert ema_adapter.keys() == live_adapter.keys()
    for key in ema_adapter:
        shadow = saved["shadow"][f"model.{key.replace('.weight', '.default.weight')}"]
        torch.testing.assert_close(ema_adapter[key], shadow)
        assert not torch.equal(ema_adapter[key], live_adapter[key])


VALIDATION = {"validation_prompt": "a red cube", "validation_num_inference_steps": 3, "validation_resolution": "32x32"}


@pytest.mark.parametrize("mode", ["none", "ema_only", "comparison"])
def test_ema_validation_modes(mode, tinyflow_config, service_runner, tmp_path):
    # decay 1 - 1e-9 (1 itself is refused): the average barely moves, so EMA renders match the untrained
    # (step 0) render to float precision, while the live weights' render moved far more than that
    config = _config(tinyflow_config, ema_decay=1 - 1e-9, ema_validation=mode, max_train_steps=6, **VALIDATION)
    result = service_runner(config).run()
    folder = tmp_path / "out" / "validation"
    before = np.load(folder / "step-0" / "validation-32x32.npy")
    after = np.load(folder / "step-6" / "validation-32x32.npy")
    if mode == "ema_only":
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    else:
        assert not np.allclose(after, before, rtol=0, atol=1e-4)
    if mode == "comparison":
        np.testing.assert_allclose(np.load(folder / "step-6" / "validation-ema-32x32.npy"), before, rtol=0, atol=1e-6)
        assert {p.name for p in result.validation if "step-6" in str(p)} == {"validation-32x32.npy", "validation-ema-32x32.npy"}
    else:
        assert not (folder / "step-6" / "validation-ema-32x32.npy").exists()
    # validation with swapped weights leaves the live weights as they were
    final = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    ema = load_file(str(tmp_path / "out" / "ema" / "adapter_model.safetensors"))
    assert any(not torch.equal(final[k], ema[k]) for k in final)


class Crash:
    """Stops the run with an exception after update ``at`` (after the checkpoint hook of that step)."""

    name = "crash"

    def __init__(self, at: int) -> None:
        self.at = at

    @hookimpl
    def on_checkpoint(self, step):
        if step == self.at:
            raise RuntimeError("simulated crash")


def test_ema_resumes_bit_exactly(tinyflow_config, service_runner, tmp_path):
    common = dict(max_train_steps=8, checkpoint_step_interval=3, ema_decay=0.9, lora_dropout=0.1)
    straight = _config(tinyflow_config, output_dir=str(tmp_path / "straight"), **common)
    service_runner(straight).run()
    broken = _config(tinyflow_config, output_dir=str(tmp_path / "broken"), **common)
    with pytest.raises(RuntimeError, match="simulated crash"):
        service_runner(broken, plugins=(Crash(6),)).run()
    resumed = service_runner(dict(broken, resume_from_checkpoint="latest")).run()
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "checkpoint-6"
    for sub in ("", "ema/"):
        a = load_file(str(tmp_path / "straight" / sub / "adapter_model.safetensors"))
        b = load_file(str(tmp_path / "broken" / sub / "adapter_model.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (sub, key)


def test_ema_keys_without_use_ema_are_refused(tinyflow_config, service_runner):
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="ema_decay: has no effect because use_ema is false"):
        service_runner(dict(tinyflow_config, ema_decay=0.9))
