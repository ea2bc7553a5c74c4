"""Fixtures for the vtrain-quant tests: one tiny LTX-Video folder per session, quanto's C++ extension
built once, and a short train-evaluate-save cycle on a prepared bundle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vtrain_ltxvideo.testing import tiny_ltx_config

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def quanto_ready() -> None:
    """optimum-quanto compiles its C++ extension on first use (about a minute on 2 cores, then cached in
    ~/.cache/torch_extensions): trigger it once per session, not inside a timed test."""
    import torch
    from optimum.quanto import freeze, qint4, qint8, quantize

    for weights in (qint8, qint4):
        layer = torch.nn.Sequential(torch.nn.Linear(128, 128))
        quantize(layer, weights=weights)
        freeze(layer)
        layer(torch.randn(2, 128))


@pytest.fixture
def ltx_quant_config(ltx_tiny_dir: Path, tmp_path: Path) -> dict[str, Any]:
    return tiny_ltx_config(ltx_tiny_dir, tmp_path / "out", learning_rate=2e-3, lora_target="attention+ffn")
