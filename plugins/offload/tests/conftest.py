"""Fixtures for the vtrain-offload tests: one tiny LTX-Video folder per session and a fast config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ltx_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    return make_pipeline_folder(tmp_path_factory.mktemp("ltx-offload") / "tiny-ltx", seed=0)


@pytest.fixture
def ltx_offload_config(ltx_tiny_dir: Path, tmp_path: Path) -> dict[str, Any]:
    return {
        "model_family": "ltxvideo",
        "pretrained_model_name_or_path": str(ltx_tiny_dir),
        "output_dir": str(tmp_path / "out"),
        "max_train_steps": 4,
        "train_batch_size": 2,
        "learning_rate": 3e-3,
        "mixed_precision": "no",
        "base_model_default_dtype": "fp32",
        "lora_rank": 8,
        "lora_target": "attention+ffn",
        "seed": 1,
        "max_grad_norm": 1.0,
        "grad_clip_method": "norm",
    }
