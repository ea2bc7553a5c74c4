"""Fixtures for the CREPA tests: a tiny random DINOv2 saved as an ordinary transformers folder."""

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
def crepa_config(tinyflow_config: dict[str, Any], tiny_dinov2_dir: Path) -> dict[str, Any]:
    """tinyflow with CREPA on block 1, aligned to the tiny DINOv2 at 16 px (a 4x4 patch grid)."""
    return {**tinyflow_config, "crepa_enabled": True, "crepa_block_index": 1, "crepa_encoder": str(tiny_dinov2_dir),
            "crepa_encoder_image_size": 16}
