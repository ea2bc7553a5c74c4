"""The torch-optimi optimizers: each trains tinyflow with a falling loss; adamw_bf16 keeps bf16 weights accurate."""

from __future__ import annotations

import pytest
from services.conftest import read_metrics

OPTIMI = ["adamw_bf16", "optimi-adamw", "optimi-lion", "optimi-stableadamw"]


def _losses(output_dir: str) -> list[float]:
    return [row["loss"] for row in read_metrics(output_dir) if "loss" in row]


@pytest.mark.parametrize("name", OPTIMI)
def test_optimizer_trains_with_falling_loss(name, tinyflow_config, service_runner):
    config = dict(tinyflow_config, optimizer=name, max_train_steps=40, train_batch_size=4, model_type="full")
    config["learning_rate"] = 5e-4 if name == "optimi-lion" else 3e-3
    result = service_runner(config).run()
    assert result.steps == 40
    losses = _losses(config["output_dir"])
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.96 * first, (name, first, last)


def test_optimizer_config_reaches_the_optimizer(tinyflow_config, service_runner):
    import optimi

    from vtrain.optim import build_optimizer

    runner = service_runner(dict(tinyflow_config, optimizer="optimi-lion", optimizer_config="betas=(0.5,0.6)"))
    import torch

    param = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([param], runner.config, runner.optimizers)
    assert isinstance(opt, optimi.Lion)
    assert (opt.param_groups[0]["beta1"], opt.param_groups[0]["beta2"]) == (0.5, 0.6)


def _train_regression(optimizer_name: str, dtype, steps: int = 300):
    """Fit y = x @ w_true with weights in ``dtype``; returns the final weights in fp32."""
    import torch

    from vtrain.services.optimizers import make_factory

    class Cfg:
        learning_rate = 2e-4
        adam_beta1, adam_beta2, adam_epsilon, adam_weight_decay = 0.9, 0.999, 1e-8, 0.0

    generator = torch.Generator().manual_seed(0)
    w_true = torch.randn(64, 8, generator=generator)
    x = torch.randn(256, 64, generator=generator)
    y = x @ w_true
    weight = torch.nn.Parameter((torch.ones(64, 8) * 4.0).to(dtype))  # large weights: bf16 spacing is 1/32
    if optimizer_name == "torch-adamw":
        opt = torch.optim.AdamW([weight], lr=Cfg.learning_rate, weight_decay=0.0)
    else:
        opt = make_factory(optimizer_name)([weight], Cfg(), {})
    for _ in range(steps):
        loss = ((x.to(dtype) @ weight).float() - y).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return weight.detach().float()


def test_adamw_bf16_keeps_bf16_weights_close_to_fp32_reference():
    import torch

    reference = _train_regression("torch-adamw", torch.float32)
    kahan = _train_regression("adamw_bf16", torch.bfloat16)
    plain = _train_regression("torch-adamw", torch.bfloat16)
    start = torch.full_like(reference, 4.0)
    moved = (reference - start).abs().mean()
    kahan_error = (kahan - reference).abs().mean()
    plain_error = (plain - reference).abs().mean()
    print(f"fp32 moved {moved:.4f}; mean |w - w_fp32|: adamw_bf16 {kahan_error:.5f}, plain bf16 AdamW {plain_error:.5f}")
    assert plain_error > 0.5 * moved  # plain bf16 loses most of the small updates
    assert kahan_error < 0.1 * plain_error
