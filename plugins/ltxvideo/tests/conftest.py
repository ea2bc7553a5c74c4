"""Fixtures for the ltxvideo tests: one tiny random LTX-Video pipeline folder per session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vtrain_ltxvideo.testing import tiny_ltx_config

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def ltx_config(ltx_tiny_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """A fast ltxvideo LoRA run on the tiny model (fp32, no autocast, seeded)."""
    return tiny_ltx_config(ltx_tiny_dir, tmp_path / "out")


@pytest.fixture
def prepared(ltx_config: dict[str, Any]) -> Any:
    """``prepared(overrides)`` -> (runner, bundle): the model loaded and adapters attached, on CPU."""
    import torch

    from vtrain.runner import Runner

    def build(overrides: dict[str, Any] | None = None, plugins: list[Any] | None = None) -> tuple[Any, Any]:
        runner = Runner.from_config({**ltx_config, **(overrides or {})}, plugins=plugins or [])
        bundle = runner.hooks.load_model(runner.config, runner.family)
        runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))
        return runner, bundle

    return build
