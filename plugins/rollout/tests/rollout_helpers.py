"""Helpers of the rollout tests: a prepared tiny-LTX bundle with an encoded batch, and a batch recorder."""

from __future__ import annotations

from typing import Any

import torch

from vtrain.hookspecs import hookimpl


class BatchRecorder:
    """An inner ``compute_loss`` wrapper that keeps a copy of the batch the family's loss receives."""

    name = "batch-recorder"

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    @hookimpl(wrapper=True)
    def compute_loss(self, bundle: Any, batch: dict[str, Any], config: Any, state: Any) -> Any:
        self.batches.append(dict(batch))
        return (yield)


def prepare(config: dict[str, Any], plugins: list[Any] | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(runner, bundle, batch): the model loaded with adapters on CPU, and two synthetic i2v clips encoded."""
    from vtrain.data.base import collate
    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    runner = Runner.from_config(config, plugins=plugins or [])
    torch.manual_seed(3)
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))
    dataset = SyntheticDataPlugin(count=2, frames=9).build_dataset(bundle=bundle, config=runner.config,
                                                                    family=runner.family)
    return runner, bundle, collate([dataset[0], dataset[1]])


def rows(batch: dict[str, Any], index: list[int]) -> dict[str, Any]:
    from vtrain_rollout.rollout import select_rows

    return select_rows(batch, index, batch["latents"].shape[0])
