"""Small helpers for tests of vtrain and its plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def prepare_bundle(config: dict[str, Any], plugins: list[Any] | None = None,
                   seed: int | None = None) -> tuple[Any, Any]:
    """(runner, bundle): the model loaded and every preparation phase run, on the CPU; ``seed`` seeds torch
    just before loading (the same adapter initialisation in every run)."""
    import torch

    from vtrain.runner import Runner

    runner = Runner.from_config(config, plugins=plugins or [])
    if seed is not None:
        torch.manual_seed(seed)
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))
    return runner, bundle


def train_steps(runner: Any, bundle: Any, samples: list[dict[str, Any]], steps: int, lr: float) -> list[float]:
    """``steps`` plain AdamW updates of a prepared ``bundle`` on pairs of ``samples`` through the run's
    ``compute_loss`` hook (no loop, no shift); returns the losses. Seeded, so two calls compare."""
    import torch

    from vtrain.data.base import collate
    from vtrain.family import TrainState

    optimizer = torch.optim.AdamW([p for _, p in bundle.trainable_named_parameters()], lr=lr)
    torch.manual_seed(0)
    state = TrainState(shift_for=lambda shape: None)
    losses = []
    for step in range(steps):
        pair = [samples[(2 * step) % len(samples)], samples[(2 * step + 1) % len(samples)]]
        out = runner.hooks.compute_loss(bundle, collate(pair), runner.config, state)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(out.loss.detach()))
    return losses


def run_distributed(config: dict[str, Any], folder: Path, plugin_files: list[Path], port: int,
                    processes: int = 2, plugins: tuple[str, ...] = ("vtrain.testing.plugin",)) -> subprocess.CompletedProcess:
    """``vtrain run`` under ``torchrun`` with ``processes`` gloo ranks on CPU (autoload off, only ``plugins``
    and ``plugin_files``); ``config`` is written to ``folder/config.json`` and ``folder`` is the working dir."""
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
            str(port), "-m", "vtrain", "run", "--config", str(path)]
    for plugin in plugins:
        args += ["-p", plugin]
    for file in plugin_files:
        args += ["--plugin-file", str(file)]
    env = {**os.environ, "VTRAIN_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=folder)
