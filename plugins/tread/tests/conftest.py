"""Fixtures for the TREAD tests: a tiny LTX-Video pipeline folder whose transformer has four blocks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vtrain_ltxvideo.testing import tiny_ltx_config

os.environ.setdefault("OMP_NUM_THREADS", "1")
BLOCKS = 4


@pytest.fixture(scope="session")
def ltx_deep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LTX-Video folder with a 4-block transformer (the stock tiny one has 2: no middle to route)."""
    import torch
    from diffusers import LTXVideoTransformer3DModel

    from vtrain_ltxvideo.tiny import make_pipeline_folder

    folder = make_pipeline_folder(tmp_path_factory.mktemp("ltx") / "tiny-ltx-4", seed=0)
    settings = dict(LTXVideoTransformer3DModel.load_config(folder / "transformer"))
    torch.manual_seed(1)
    transformer = LTXVideoTransformer3DModel.from_config({**settings, "num_layers": BLOCKS})
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    return folder


@pytest.fixture
def tread_ltx_config(ltx_deep_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """A fast LoRA run on the 4-block tiny model (fp32, seeded, 4 updates of batch 2)."""
    return tiny_ltx_config(ltx_deep_dir, tmp_path / "out", lora_target="attention+ffn")

