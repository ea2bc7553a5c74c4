"""Configure-time refusals, model CPU offload, the attention backend and regional compile."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from vtrain.errors import ConfigError


def _refused(make_runner: Any, config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        make_runner(config)
    return str(caught.value)


def test_impossible_combinations_are_refused_with_reasons(tinyflow_config: dict, make_runner: Any) -> None:
    group = {**tinyflow_config, "enable_group_offload": True, "gradient_checkpointing": True}
    text = _refused(make_runner, {**group, "enable_model_cpu_offload": True})
    assert "enable_group_offload and enable_model_cpu_offload" in text and "cannot be combined" in text
    text = _refused(make_runner, {**tinyflow_config, "enable_group_offload": True})
    assert "needs gradient_checkpointing" in text and "set gradient_checkpointing=true" in text
    assert "model_type=full" in _refused(make_runner, {**group, "model_type": "full"})
    text = _refused(make_runner, {**group, "group_offload_to_disk_path": "off", "base_model_precision": "int8-quanto"})
    assert "safetensors cannot write" in text
    text = _refused(make_runner, {**group, "base_model_precision": "nf4-bnb"})
    assert "does not move" in text and "use nf4-torchao" in text
    make_runner({**group, "base_model_precision": "nf4-torchao"})  # moved whole by the groups: accepted
    text = _refused(make_runner, {**group, "group_offload_type": "leaf_level", "torch_compile": True})
    assert "use group_offload_type=block_level with torch_compile" in text
    assert "unknown attention backend 'fastest'" in _refused(make_runner, {**tinyflow_config,
                                                                          "attention_mechanism": "fastest"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_only_attention_is_refused_on_cpu(tinyflow_config: dict, make_runner: Any) -> None:
    text = _refused(make_runner, {**tinyflow_config, "attention_mechanism": "sageattention"})
    assert "sageattention runs only on CUDA GPUs" in text and "fix: use attention_mechanism=sdpa" in text
    assert "needs a CUDA GPU" in _refused(make_runner, {**tinyflow_config, "attention_mechanism": "flash"})


def test_model_cpu_offload_returns_components_to_the_cpu() -> None:
    from vtrain.family import ModelBundle
    from vtrain_offload.plugin import return_components_to_cpu

    class Recording(torch.nn.Linear):
        def __init__(self) -> None:
            super().__init__(2, 2)
            self.moves: list[Any] = []

        def to(self, *args: Any, **kwargs: Any) -> Any:
            self.moves.append(args or kwargs)
            return super().to(*args, **kwargs)

    vae, text_encoder = Recording(), Recording()
    bundle = ModelBundle(family="x", model=torch.nn.Linear(2, 2),
                         components={"vae": vae, "text_encoder": text_encoder, "tokenizer": object()})
    assert return_components_to_cpu(bundle) == ["vae", "text_encoder"]
    assert vae.moves == [("cpu",)] and text_encoder.moves == [("cpu",)]


def test_model_cpu_offload_wraps_encoding_and_validation(tinyflow_config: dict, make_runner: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain_offload import plugin

    calls: list[str] = []
    monkeypatch.setattr(plugin, "return_components_to_cpu", lambda bundle: calls.append(bundle.family) or [])
    runner = make_runner({**tinyflow_config, "enable_model_cpu_offload": True})
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.encode_batch(bundle, {"captions": ["a"]}, runner.config)
    runner.hooks.validate(bundle, runner.config, 0, {"p": "a prompt"})
    assert calls == ["tinyflow", "tinyflow"]


def test_attention_backend_is_used_for_training(ltx_offload_config: dict[str, Any], tmp_path: Path) -> None:
    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    config = {**ltx_offload_config, "attention_mechanism": "_native_math", "max_train_steps": 3}
    runner = Runner.from_config(config, plugins=[SyntheticDataPlugin(count=2, frames=9)])
    runner.run()
    losses = [json.loads(line)["loss"] for line in (Path(config["output_dir"]) / "metrics.jsonl").open()]
    assert all(math.isfinite(v) for v in losses)
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))
    backends = {getattr(m.processor, "_attention_backend", None) for m in bundle.model.modules() if hasattr(m, "processor")}
    assert {str(getattr(b, "value", b)) for b in backends} == {"_native_math"}


def test_regional_compile_trains_like_eager(tinyflow_config: dict, make_runner: Any) -> None:
    """Each tinyflow block is compiled (not the whole model) and training follows the eager run."""
    def losses(extra: dict[str, Any], out: str) -> tuple[list[float], Any]:
        runner = make_runner({**tinyflow_config, "max_train_steps": 6, "output_dir": out, **extra})
        runner.run()
        return [json.loads(line)["loss"] for line in (Path(out) / "metrics.jsonl").open()], runner

    eager, _ = losses({}, tinyflow_config["output_dir"] + "-eager")
    compiled, runner = losses({"torch_compile": True}, tinyflow_config["output_dir"] + "-compiled")
    assert len(compiled) == 6
    assert max(abs(a - b) for a, b in zip(eager, compiled)) < 1e-3, (eager, compiled)
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))
    assert bundle.meta["speed"]["compiled_blocks"] == 2
    assert all(block._compiled_call_impl is not None for block in bundle.model.blocks)
    assert getattr(bundle.model, "_compiled_call_impl", None) is None  # regional: the model itself is not compiled


def test_model_cpu_offload_after_a_loss_that_used_a_component(tinyflow_config: dict, make_runner: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A component left off the CPU by compute_loss (CREPA decodes with the VAE) is sent back; otherwise no move."""
    import torch

    from vtrain.family import TrainState
    from vtrain_offload import plugin

    calls: list[str] = []
    monkeypatch.setattr(plugin, "return_components_to_cpu", lambda bundle: calls.append(bundle.family) or [])
    runner = make_runner({**tinyflow_config, "enable_model_cpu_offload": True})
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))
    encoded = runner.hooks.encode_batch(bundle, {"pixels": torch.rand(1, 5, 3, 16, 16), "captions": ["a"]},
                                        runner.config)
    batch = {key: value for key, value in encoded.items()}
    calls.clear()
    runner.hooks.compute_loss(bundle, batch, runner.config, TrainState())
    assert calls == []  # every component on the CPU: nothing to do
    bundle.components["used_on_accelerator"] = torch.nn.Linear(2, 2, device="meta")
    runner.hooks.compute_loss(bundle, batch, runner.config, TrainState())
    assert calls == ["tinyflow"]


def test_torch_compile_mode_reaches_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from vtrain_offload.speed import compile_blocks

    model = torch.nn.Module()
    model.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
    modes: list[Any] = []
    for block in model.blocks:
        monkeypatch.setattr(block, "compile", lambda mode=None, **_: modes.append(mode))
    assert compile_blocks(model, "max-autotune-no-cudagraphs") == 2
    assert compile_blocks(model, "default") == 2
    assert modes == ["max-autotune-no-cudagraphs"] * 2 + [None] * 2


def test_group_offload_is_refused_with_fsdp(tinyflow_config: dict, make_runner: Any) -> None:
    text = _refused(make_runner, {**tinyflow_config, "enable_group_offload": True, "gradient_checkpointing": True,
                                  "fsdp_enable": True, "grad_clip_method": "norm"})
    assert "group offload and FSDP both decide where the transformer's weights live" in text
    assert "fsdp_offload_params" in text
