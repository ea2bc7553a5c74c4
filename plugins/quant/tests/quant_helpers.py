"""Shared steps of the quantisation tests: prepare a bundle, score it at fixed noise, train it."""

from __future__ import annotations

from typing import Any

import torch


def prepare(config: dict[str, Any], plugins: list[Any] | None = None) -> tuple[Any, Any]:
    """(runner, bundle) with the model loaded and every preparation phase run, on the CPU."""
    from vtrain.testing.helpers import prepare_bundle

    return prepare_bundle(config, plugins)


def fixed_noise_loss(runner: Any, bundle: Any, samples: list[dict[str, Any]]) -> float:
    """Mean loss over ``samples`` at fixed sigmas and fixed noise (no RNG involved)."""
    from vtrain.data.base import collate
    from vtrain.family import TrainState

    generator = torch.Generator().manual_seed(123)
    total, count = 0.0, 0
    with torch.no_grad():
        for sample in samples:
            batch = collate([sample])
            for sigma in (0.3, 0.6, 0.9):
                batch["sigmas"] = torch.tensor([sigma])
                batch["noise"] = torch.randn(batch["latents"].shape, generator=generator)
                total += float(runner.hooks.compute_loss(bundle, batch, runner.config, TrainState()).loss)
                count += 1
    return total / count


def train(runner: Any, bundle: Any, samples: list[dict[str, Any]], steps: int, lr: float) -> list[float]:
    """``steps`` AdamW updates on pairs of ``samples``; returns the training losses."""
    from vtrain.testing.helpers import train_steps

    return train_steps(runner, bundle, samples, steps, lr)
