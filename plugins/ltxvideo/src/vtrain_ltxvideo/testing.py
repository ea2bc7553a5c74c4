"""pytest fixtures for plugins that test against the tiny LTX-Video model (loaded through the
``pytest11`` entry point of vtrain-ltxvideo, so any plugin's tests can use them).

- ``ltx_tiny_dir``: one random-initialised tiny LTX-Video pipeline folder per test session.
- :func:`tiny_ltx_config`: a fast, seeded LoRA training config on that folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def tiny_ltx_config(model_dir: Path, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A LoRA run on the tiny model: fp32, no autocast, 4 updates of batch 2, seeded, posterior-mean latents."""
    config = {
        "model_family": "ltxvideo",
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
        # the tiny random VAE's posterior std is about as large as its mean: sampled latents would bury
        # the signal the short convergence checks look for (tests of sampling set "sample" themselves)
        "vae_latent_sampling": "mode",
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def ltx_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    return make_pipeline_folder(tmp_path_factory.mktemp("ltx") / "tiny-ltx", seed=0)


def lora_output_change(model_dir: Path | str, lora_dir: Path | str) -> float:
    """Largest pixel change a saved LoRA makes to a short, seeded render of a fresh ``LTXPipeline``
    loaded from ``model_dir`` (``load_lora_weights(lora_dir)``, exactly as a user would)."""
    import numpy as np
    import torch
    from diffusers import LTXPipeline

    def render(pipeline: Any) -> Any:
        pipeline.set_progress_bar_config(disable=True)
        return pipeline(prompt="a red square", width=64, height=64, num_frames=9, num_inference_steps=2,
                        generator=torch.Generator().manual_seed(0), output_type="np").frames[0]

    plain = render(LTXPipeline.from_pretrained(model_dir))
    pipeline = LTXPipeline.from_pretrained(model_dir)
    pipeline.load_lora_weights(lora_dir)
    return float(np.abs(render(pipeline) - plain).max())
