"""Fixtures for the vtrain-offload tests: one tiny LTX-Video folder per session and a fast config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vtrain_ltxvideo.testing import tiny_ltx_config

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def ltx_offload_config(ltx_tiny_dir: Path, tmp_path: Path) -> dict[str, Any]:
    return tiny_ltx_config(ltx_tiny_dir, tmp_path / "out", learning_rate=3e-3, lora_target="attention+ffn")
