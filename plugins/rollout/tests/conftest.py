"""Fixtures for the rollout tests: a tiny random DINOv2 (for runs with CREPA) and a tiny-LTX run config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_dinov2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=4,
                          image_size=16)
    folder = tmp_path_factory.mktemp("dinov2") / "tiny-dinov2"
    Dinov2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture
def rollout_config(ltx_tiny_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """The tiny LTX-Video LoRA run with rollout on: every sample chosen, k in 0..3, i2v on every sample."""
    from vtrain_ltxvideo.testing import tiny_ltx_config

    return tiny_ltx_config(ltx_tiny_dir, tmp_path / "out", scheduled_sampling_max_step_offset=3,
                           scheduled_sampling_probability=1.0, i2v_conditioning_probability=1.0)
