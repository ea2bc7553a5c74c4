"""pytest fixtures for tests against the tiny LTX-2 model (loaded through the ``pytest11`` entry point).

- ``ltx2_tiny_dir`` / ``ltx2_tiny23_dir``: one random tiny LTX-2.0 / LTX-2.3 pipeline folder per session.
- :func:`tiny_ltx2_config`: a fast, seeded LoRA training config on such a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def tiny_ltx2_config(model_dir: Path, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A LoRA run on the tiny model: fp32, no autocast, 4 updates of batch 2, seeded, 32 text tokens, no i2v."""
    config = {
        "model_family": "ltx2",
        "pretrained_model_name_or_path": str(model_dir),
        "output_dir": str(output_dir),
        "max_train_steps": 4,
        "train_batch_size": 2,
        "learning_rate": 1e-3,
        "mixed_precision": "no",
        "base_model_default_dtype": "fp32",
        "lora_rank": 8,
        "seed": 1,
        "max_grad_norm": 1.0,
        "grad_clip_method": "norm",
        "ltx2_text_max_length": 32,
        "ltx2_i2v_probability": 0.0,  # tests switch image-to-video on where they test it
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def ltx2_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vtrain_ltx2.tiny import make_pipeline_folder

    return make_pipeline_folder(tmp_path_factory.mktemp("ltx2") / "tiny-ltx2", variant="2.0", seed=0)


@pytest.fixture(scope="session")
def ltx2_tiny23_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vtrain_ltx2.tiny import make_pipeline_folder

    return make_pipeline_folder(tmp_path_factory.mktemp("ltx23") / "tiny-ltx23", variant="2.3", seed=0)
