"""The step benchmark's FLOP count equals torch's FLOP counter on the tiny LTX-Video model (LoRA,
frozen base, masked cross-attention), with and without gradient checkpointing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_ltxvideo_step import ltx_step_flops, transformer_shape  # noqa: E402


def _tiny_lora_model(layers: int) -> Any:
    from diffusers import LTXVideoTransformer3DModel
    from peft import LoraConfig

    torch.manual_seed(0)
    model = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                       num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                       num_layers=layers, caption_channels=24)
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    model.set_attention_backend("_native_math")  # plain matmuls, which the counter sees on the CPU
    return model.train()


@pytest.mark.parametrize("checkpointing", [True, False])
def test_formula_matches_the_flop_counter(checkpointing: bool) -> None:
    from torch.utils.checkpoint import set_checkpoint_early_stop
    from torch.utils.flop_counter import FlopCounterMode

    model = _tiny_lora_model(layers=3)
    if checkpointing:
        model.enable_gradient_checkpointing()
    batch, frames, height, width, text = 2, 3, 4, 6, 16
    mask = torch.ones(batch, text, dtype=torch.bool)
    mask[:, 10:] = False
    with set_checkpoint_early_stop(False), FlopCounterMode(display=False) as counter:
        out = model(hidden_states=torch.randn(batch, frames * height * width, 8),
                    encoder_hidden_states=torch.randn(batch, text, 24), timestep=torch.tensor([500.0, 200.0]),
                    encoder_attention_mask=mask, num_frames=frames, height=height, width=width,
                    rope_interpolation_scale=(8 / 25, 32, 32), return_dict=False)[0]
        forward = counter.get_total_flops()
        out.pow(2).mean().backward()
    flops = ltx_step_flops(transformer_shape(model.config), frames * height * width, text, rank=4, batch=batch,
                           checkpointing=checkpointing)
    assert flops["forward"] == forward
    assert flops["hardware"] == counter.get_total_flops()
    recompute = flops["hardware"] - flops["model"]
    assert recompute == (counter.get_total_flops() - forward) - flops["backward"]
    assert (recompute > 0) == checkpointing


def test_real_size_count_is_below_the_old_overcount() -> None:
    """LTX-Video 2B at 768x512x49: the old count (an adaLN matmul per block, cross-attention k/v on the
    video tokens, weight gradients of the frozen base) was 1.85x the real count with the recompute, and it
    divided that by the time as MFU: 2.7x the model FLOPs (forward + backward) MFU is defined by."""
    from argparse import Namespace

    shape = Namespace(num_layers=28, num_attention_heads=32, attention_head_dim=64, in_channels=128,
                      out_channels=128, caption_channels=4096)
    tokens, text, d = 7 * 16 * 24, 128, 2048
    old = (2 * 28 * (4 * d * d * 2 + 2 * d * 4 * d + 6 * d * d) * tokens
           + 4 * 28 * tokens * (tokens + text) * d) * 4
    new = ltx_step_flops(shape, tokens, text, rank=16)
    assert 1.8 < old / new["hardware"] < 1.9, old / new["hardware"]
    assert 2.6 < old / new["model"] < 2.8, old / new["model"]
