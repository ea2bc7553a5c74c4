"""Layers a quantisation backend cannot quantise keep full precision with a one-line note and are counted
in the summary, for every backend (instead of a kernel error such as ``shape '[32, 0]'``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from vtrain_quant.precisions import PRECISIONS
from vtrain_quant.quantize import quantize_module, unsupported_reason

CPU_PRECISIONS = ("int8-quanto", "int4-quanto", "fp8-quanto", "int8-torchao", "fp8-torchao", "nf4-torchao", "nf4-bnb")


def test_nf4_run_on_a_model_narrower_than_the_block_size_trains_and_validates(
        tinyflow_config: dict, make_runner: Any, capfd: pytest.CaptureFixture) -> None:
    """tinyflow_width 4: every block Linear is 4x8, 8x4 or 4x4 (fewer values than one 64-value block);
    validation runs the layers in eval mode, where bitsandbytes repacks the weights for its CPU kernel."""
    config = {**tinyflow_config, "base_model_precision": "nf4-bnb", "tinyflow_width": 4, "max_train_steps": 3,
              "validation_prompt": "class 1", "validation_num_inference_steps": 2, "mixed_precision": "bf16",
              "base_model_default_dtype": "bf16"}
    result = make_runner(config, blocked=["example"]).run()
    assert result.steps == 3
    out, err = capfd.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("note: nf4-bnb:")]
    assert len(notes) == 1 and "6 Linear layer(s) kept in full precision" in notes[0], err[-2000:]
    assert "does not fill whole 64-value blocks" in notes[0]
    assert "quantised model: nf4-bnb, 0 Linear layers (6 skipped: the backend cannot quantise them)" in out
    losses = [json.loads(line)["loss"] for line in (Path(config["output_dir"]) / "metrics.jsonl").open()]
    assert len(losses) == 3


@pytest.mark.parametrize("precision", [*CPU_PRECISIONS, "fp8dq-torchao"])
def test_every_backend_skips_what_it_cannot_quantise_and_quantises_the_rest(precision: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 3), torch.nn.Linear(3, 1)).requires_grad_(False)
    wanted = {str(i): unsupported_reason(precision, layer.in_features, layer.out_features)
              for i, layer in enumerate(model)}
    assert wanted["0"] is None  # a regular layer is quantised by every backend
    if PRECISIONS[precision].min_capability is not None and not torch.cuda.is_available():
        return  # the rule is checked; fp8dq-torchao itself needs a CUDA GPU of capability 8.9
    skipped: dict[str, str] = {}
    names = quantize_module(model, precision, (), torch.float32, skipped)
    assert names == [name for name, reason in wanted.items() if reason is None]
    assert skipped == {name: reason for name, reason in wanted.items() if reason is not None}
    model(torch.randn(2, 64))  # what was quantised runs; what was skipped is still a plain Linear
    for name in skipped:
        assert type(model.get_submodule(name)) is torch.nn.Linear


def test_backend_rules_name_the_shape() -> None:
    assert unsupported_reason("nf4-bnb", 4, 8) == "its 8x4 weight does not fill whole 64-value blocks"
    assert "multiple of 32" in unsupported_reason("nf4-bnb", 64, 48)
    assert unsupported_reason("nf4-bnb", 32, 64) is None
    assert "multiple of 16" in unsupported_reason("fp8dq-torchao", 24, 32)
    assert unsupported_reason("int8-quanto", 3, 1) is None
    assert unsupported_reason("nf4-torchao", 4, 8) == "its 8x4 weight does not fill whole 64-value blocks"
    assert unsupported_reason("nf4-torchao", 32, 48) is None  # no CPU-kernel row rule: it dequantises


@pytest.mark.parametrize("shape", [(48, 32), (512, 256)])
def test_nf4_torchao_weights_are_nf4_tensors_that_pass_gradients(shape: tuple[int, int]) -> None:
    """nf4-torchao: the weight becomes torchao's NF4Tensor (64-value blocks; scales double-quantised in blocks of
    256, or the largest power of two dividing a small layer's block count), F.linear matches the dequantised weight, the input still gets its gradient, and
    the quantised form is smaller."""
    from torchao.quantization import NF4Tensor

    from vtrain_quant.quantize import quantized_bytes

    torch.manual_seed(0)
    out_features, in_features = shape
    model = torch.nn.Sequential(torch.nn.Linear(in_features, out_features)).requires_grad_(False)
    plain = model[0].weight.detach().clone()
    before = quantized_bytes(model)
    assert quantize_module(model, "nf4-torchao", (), torch.float32) == ["0"]
    weight = model[0].weight
    assert isinstance(weight, NF4Tensor) and type(model[0]) is torch.nn.Linear
    assert weight.scaler_block_size == {24: 8, 2048: 256}[in_features * out_features // 64]
    dequantised = weight.get_original_weight()
    assert 0 < float((dequantised - plain).abs().max()) < 0.5 * float(plain.abs().max())
    x = torch.randn(3, in_features, requires_grad=True)
    y = model(x)
    torch.testing.assert_close(y, torch.nn.functional.linear(x, dequantised, model[0].bias))
    y.sum().backward()
    torch.testing.assert_close(x.grad, dequantised.sum(0).expand(3, -1))
    assert quantized_bytes(model) < before / 2
