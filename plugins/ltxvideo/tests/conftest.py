"""Fixtures for the ltxvideo tests: one tiny random LTX-Video pipeline folder per session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ltx_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    return make_pipeline_folder(tmp_path_factory.mktemp("ltx") / "tiny-ltx", seed=0)


@pytest.fixture
def ltx_config(ltx_tiny_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """A fast ltxvideo LoRA run on the tiny model (fp32, no autocast, seeded)."""
    return {
        "model_family": "ltxvideo",
        "pretrained_model_name_or_path": str(ltx_tiny_dir),
        "output_dir": str(tmp_path / "out"),
        "max_train_steps": 4,
        "train_batch_size": 2,
        "learning_rate": 1e-3,
        "mixed_precision": "no",
        "base_model_default_dtype": "fp32",
        "lora_rank": 8,
        "seed": 1,
        "max_grad_norm": 1.0,
        "grad_clip_method": "norm",
    }


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
