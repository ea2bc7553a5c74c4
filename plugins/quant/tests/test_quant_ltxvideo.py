"""Every precision that runs on a CPU, with LoRA and with LyCORIS, on the tiny LTX-Video model:
the loss is finite and falls, sensitive layers stay unquantised, and the adapter loads on the
plain (unquantised) model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from quant_helpers import fixed_noise_loss, prepare, train

from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

CPU_PRECISIONS = ("int8-quanto", "int4-quanto", "fp8-quanto", "int8-torchao", "fp8-torchao", "nf4-bnb")
QUANTISED_TYPES = {"quanto": "QLinear", "bnb": "Linear4bit"}


def _base_layer(module: Any) -> Any:
    return getattr(module, "base_layer", module)


def _is_quantised(linear: Any, precision: str) -> bool:
    library = precision.split("-")[1]
    if library == "torchao":
        return type(linear.weight).__module__.startswith("torchao")
    return type(linear).__name__ == QUANTISED_TYPES[library]


def _samples(runner: Any, bundle: Any, count: int = 4) -> list[dict[str, Any]]:
    dataset = SyntheticDataPlugin(count=count, frames=9).build_dataset(bundle=bundle, config=runner.config,
                                                                        family=runner.family)
    return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize("adapter", ["lora", "lycoris"])
@pytest.mark.parametrize("precision", CPU_PRECISIONS)
def test_adapter_trains_on_quantised_base_and_loads_unquantised(
        precision: str, adapter: str, ltx_quant_config: dict[str, Any], quanto_ready: None, tmp_path: Path) -> None:
    config = {**ltx_quant_config, "base_model_precision": precision}
    if adapter == "lycoris":
        settings = tmp_path / "lycoris.json"
        settings.write_text(json.dumps({"algo": "lokr", "multiplier": 1.0, "linear_dim": 4, "linear_alpha": 2,
                                        "factor": 4}))
        config.update(lora_type="lycoris", lycoris_config=str(settings))
        config.pop("lora_target")
    runner, bundle = prepare(config)
    model = bundle.model

    block = model.transformer_blocks[0]
    assert _is_quantised(_base_layer(block.attn1.to_q), precision)
    assert _is_quantised(_base_layer(block.ff.net[2]), precision)
    for name in ("proj_in", "proj_out"):  # the family's exclusion list keeps these in full precision
        layer = _base_layer(getattr(model, name))
        assert type(layer) is torch.nn.Linear and layer.weight.dtype == torch.float32, name
    assert type(model.caption_projection.linear_1) is torch.nn.Linear
    report = bundle.meta["quantization"]["model"]
    assert report["precision"] == precision and report["layers"] == 20  # 2 blocks x (attn1 4 + attn2 4 + ff 2)
    assert report["bytes_after"] < report["bytes_before"]

    if adapter == "lycoris":  # the delta is added to the output (bypass), never merged into quantised weights
        modules = [m for m in bundle.extra_trainables["lycoris"].modules() if hasattr(m, "bypass_mode")
                   and "transformer_blocks" in str(getattr(m, "lora_name", ""))]
        assert modules and all(m.bypass_mode for m in modules)
    samples = _samples(runner, bundle)
    before = fixed_noise_loss(runner, bundle, samples)
    losses = train(runner, bundle, samples, steps=12, lr=1e-2 if adapter == "lycoris" else 3e-3)
    after = fixed_noise_loss(runner, bundle, samples)
    assert all(math.isfinite(v) for v in losses), losses
    assert after < 0.9 * before, (before, after)

    out = tmp_path / "saved"
    runner.hooks.save_model(bundle, runner.config, out)
    _check_loads_unquantised(runner, out, adapter, config["pretrained_model_name_or_path"])


def _check_loads_unquantised(runner: Any, out: Path, adapter: str, base: str) -> None:
    if adapter == "lycoris":
        from lycoris import create_lycoris_from_weights

        from vtrain_ltxvideo.loading import load_transformer

        plain = load_transformer(runner.config, torch.float32)
        network, weights = create_lycoris_from_weights(1.0, str(out / "lycoris_weights.safetensors"), plain)
        assert len(network.loras) > 0 and any(torch.count_nonzero(v) for v in weights.values())
        return
    from vtrain_ltxvideo.testing import lora_output_change

    assert lora_output_change(base, out) > 1e-4


def test_quanto_base_in_fp32_trains_under_bf16_autocast_on_the_cpu(ltx_quant_config: dict[str, Any],
                                                                      quanto_ready: None) -> None:
    """mixed_precision's default (bf16) on a CPU run's fp32 base: quanto's CPU kernel for bf16 inputs needs
    bf16 scales, so the layers get their inputs in the weights' dtype (it used to stop with a RuntimeError)."""
    from vtrain.runner import Runner

    config = {**ltx_quant_config, "base_model_precision": "int8-quanto", "mixed_precision": "bf16",
              "base_model_default_dtype": "fp32", "max_train_steps": 2}
    result = Runner.from_config(config, plugins=[SyntheticDataPlugin(count=4, frames=9)]).run()
    assert result.steps == 2 and math.isfinite(result.final_loss)
