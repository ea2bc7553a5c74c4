"""Fixtures for the ltx2 tests: tiny random LTX-2 pipeline folders (session-wide, from vtrain_ltx2.testing)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vtrain_ltx2.testing import tiny_ltx2_config

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def ltx2_config(ltx2_tiny_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """A fast ltx2 LoRA run on the tiny LTX-2.0 model (fp32, seeded)."""
    return tiny_ltx2_config(ltx2_tiny_dir, tmp_path / "out")


@pytest.fixture
def prepared(ltx2_config: dict[str, Any]) -> Any:
    """``prepared(overrides)`` -> (runner, bundle): the model loaded and adapters attached, on CPU."""
    import torch

    from vtrain.runner import Runner

    def build(overrides: dict[str, Any] | None = None, plugins: list[Any] | None = None) -> tuple[Any, Any]:
        runner = Runner.from_config({**ltx2_config, **(overrides or {})}, plugins=plugins or [])
        bundle = runner.hooks.load_model(runner.config, runner.family)
        runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))
        return runner, bundle

    return build
