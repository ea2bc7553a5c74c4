"""GPU paths of vtrain-quant checked on the CPU: fp8dq-torchao refused for training (torch._scaled_mm has
no derivative), quantize_via=accelerator keeps a group-offloaded denoiser on the CPU, and fp8-quanto's
CUDA build needs are reported before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from vtrain.errors import ConfigError


def test_scaled_mm_has_no_derivative() -> None:
    """What fp8dq-torchao's Linear computes: float8 activations times float8 weights by torch._scaled_mm."""
    x = torch.randn(16, 32, requires_grad=True)
    weight = torch.randn(16, 32).to(torch.float8_e4m3fn)
    one = torch.tensor(1.0)
    out = torch._scaled_mm(x.to(torch.float8_e4m3fn), weight.t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
    with pytest.raises(RuntimeError, match="derivative for aten::_scaled_mm is not implemented"):
        out.sum().backward()


def test_fp8dq_is_refused_for_the_denoiser_only(ltx_quant_config: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain.runner import Runner
    from vtrain_quant import precisions

    monkeypatch.setattr(precisions, "cuda_capability", lambda: (9, 0))  # an H100: the hardware check passes
    with pytest.raises(ConfigError) as caught:
        Runner.from_config({**ltx_quant_config, "base_model_precision": "fp8dq-torchao"})
    assert "torch._scaled_mm, which has no derivative" in str(caught.value)
    assert "use fp8-torchao" in str(caught.value)
    Runner.from_config({**ltx_quant_config, "text_encoder_1_precision": "fp8dq-torchao"})


def test_group_offload_quantises_the_denoiser_on_the_cpu(ltx_quant_config: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain.runner import Runner
    from vtrain_quant import plugin

    runner = Runner.from_config({**ltx_quant_config, "base_model_precision": "int8-torchao",
                                 "enable_group_offload": True, "gradient_checkpointing": True})
    plain = Runner.from_config({**ltx_quant_config, "base_model_precision": "int8-torchao"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    cpu = torch.device("cpu")
    assert plugin.quantize_device(runner.config, cpu, is_denoiser=True) == cpu
    assert plugin.quantize_device(runner.config, cpu, is_denoiser=False) == torch.device("cuda")
    assert plugin.quantize_device(plain.config, cpu, is_denoiser=True) == torch.device("cuda")

    # the real phase: with CUDA reported present, nothing tries to move the denoiser to a GPU
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks._hook.quantize_model(bundle=bundle, config=runner.config)
    assert bundle.meta["quantization"]["model"]["layers"] == 20
    assert all(p.device.type == "cpu" for p in bundle.model.parameters())


def test_fp8_quanto_reports_a_missing_cuda_build_toolchain(ltx_quant_config: dict[str, Any], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain.runner import Runner
    from vtrain_quant import precisions

    monkeypatch.setattr(precisions, "cuda_capability", lambda: (9, 0))
    monkeypatch.setattr(precisions, "_has_ninja", lambda: False)
    monkeypatch.setattr(precisions, "_has_nvcc", lambda: False)
    with pytest.raises(ConfigError) as caught:
        Runner.from_config({**ltx_quant_config, "base_model_precision": "fp8-quanto"})
    assert "compiles optimum-quanto's CUDA kernels" in str(caught.value) and "ninja and nvcc" in str(caught.value)
    monkeypatch.setattr(precisions, "_has_ninja", lambda: True)
    monkeypatch.setattr(precisions, "_has_nvcc", lambda: True)
    Runner.from_config({**ltx_quant_config, "base_model_precision": "fp8-quanto"})
    monkeypatch.setattr(precisions, "cuda_capability", lambda: None)  # CPU: quanto does not build the CUDA kernels
    monkeypatch.setattr(precisions, "_has_nvcc", lambda: False)
    assert precisions.quanto_cuda_build_problem() is None
