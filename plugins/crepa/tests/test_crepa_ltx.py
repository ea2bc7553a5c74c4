"""CREPA on the tiny random LTX-Video model: decode, align, log, save; and dropping the VAE encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vtrain.hookspecs import hookimpl

pytest.importorskip("vtrain_ltxvideo")


@pytest.fixture
def ltx_crepa_config(ltx_tiny_dir: Path, tiny_dinov2_dir: Path, tmp_path: Path) -> dict[str, Any]:
    return {
        "model_family": "ltxvideo", "pretrained_model_name_or_path": str(ltx_tiny_dir),
        "output_dir": str(tmp_path / "out"), "max_train_steps": 24, "train_batch_size": 2, "learning_rate": 2e-3,
        "mixed_precision": "no", "base_model_default_dtype": "fp32", "lora_rank": 8, "seed": 1,
        "lora_target": "attention+ffn", "max_grad_norm": 1.0, "grad_clip_method": "norm",
        "crepa_enabled": True, "crepa_block_index": 1, "crepa_encoder": str(tiny_dinov2_dir),
        "crepa_encoder_image_size": 16,
    }


class _KeepRun:
    name = "keep-run"

    def __init__(self) -> None:
        self.run: Any = None

    @hookimpl
    def on_run_end(self, run: Any) -> None:
        self.run = run


def test_ltx_training_with_crepa(ltx_crepa_config: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    keep = _KeepRun()
    result = Runner.from_config(ltx_crepa_config, plugins=[SyntheticDataPlugin(count=4, frames=17), keep]).run()
    rows = [json.loads(line) for line in (Path(ltx_crepa_config["output_dir"]) / "metrics.jsonl").open()]
    assert len(rows) == 24 and all({"loss/flow", "loss/crepa", "crepa_alignment"} <= set(row) for row in rows)
    alignment = [row["crepa_alignment"] for row in rows]
    assert np.mean(alignment[-6:]) > np.mean(alignment[:6]) + 0.2, alignment
    out = Path(ltx_crepa_config["output_dir"])
    assert out / "crepa_head.safetensors" in result.model_paths
    lora = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert lora and not any("crepa" in key for key in lora)
    head = load_file(str(out / "crepa_head.safetensors"))
    assert head["1.weight"].shape == (16, 32)  # tiny LTX inner width 4 x 8 -> tiny DINOv2 width 16


def test_ltx_decode_latents_round_trip_shape(ltx_crepa_config: dict[str, Any]) -> None:
    import torch

    from vtrain.runner import Runner

    runner = Runner.from_config({**ltx_crepa_config, "crepa_enabled": False})
    bundle = runner.hooks.load_model(runner.config, runner.family)
    pixels = torch.rand(1, 9, 3, 64, 96)
    latents = runner.family.encode_batch(bundle, {"pixels": pixels}, runner.config)["latents"]
    decoded = runner.family.decode_latents(bundle, latents)
    assert decoded.shape == (1, 9, 3, 64, 96)
    assert float(decoded.min()) >= 0.0 and float(decoded.max()) <= 1.0
    assert runner.family.hidden_state_width(bundle, 1) == 32


def test_drop_vae_encoder_after_caching(ltx_crepa_config: dict[str, Any]) -> None:
    import torch

    from vtrain.runner import Runner
    from vtrain_crepa.vae import DroppedVAEEncoder
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    keep = _KeepRun()
    config = {**ltx_crepa_config, "max_train_steps": 2, "crepa_drop_vae_encoder": True}
    Runner.from_config(config, plugins=[SyntheticDataPlugin(count=2, frames=9), keep]).run()
    vae = keep.run.bundle.components["vae"]
    assert isinstance(vae.encoder, DroppedVAEEncoder)
    assert sum(p.numel() for p in vae.encoder.parameters()) == 0
    with pytest.raises(RuntimeError, match="crepa_drop_vae_encoder"):
        vae.encode(torch.zeros(1, 3, 9, 64, 64))


def test_block_index_beyond_the_model_names_the_key(ltx_crepa_config: dict[str, Any]) -> None:
    """The tiny model has 2 blocks: block 8 (the default) is refused when the model loads, naming the key."""
    from vtrain.errors import ConfigError
    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    runner = Runner.from_config({**ltx_crepa_config, "crepa_block_index": 8},
                                plugins=[SyntheticDataPlugin(count=2, frames=9)])
    with pytest.raises(ConfigError, match=r"crepa_block_index.*out of range: this transformer has 2 blocks"):
        runner.hooks.load_model(runner.config, runner.family)


def test_drop_vae_encoder_with_image_to_video_validation_is_refused_up_front(ltx_crepa_config: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    from vtrain.errors import ConfigError
    from vtrain.runner import Runner

    config = {**ltx_crepa_config, "crepa_drop_vae_encoder": True, "validation_prompt": "a red square"}
    with pytest.raises(ConfigError, match="crepa_drop_vae_encoder: the 'ltxvideo' family validates image-to-video"):
        Runner.from_config(config)
    (tmp_path / "clips").mkdir()
    backends = [{"id": "clips", "type": "local", "dataset_type": "video", "instance_data_dir": str(tmp_path / "clips"),
                 "cache_dir_vae": str(tmp_path / "vae"), "video": {"num_frames": 9, "is_i2v": False}},
                {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True,
                 "cache_dir": str(tmp_path / "text")}]
    Runner.from_config({**config, "data_backend_config": backends})  # text-to-video validation: no encoder needed
    Runner.from_config({**config, "validation_disable": True})  # no validation at all: no encoder needed
