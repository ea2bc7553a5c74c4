"""Sharded (FSDP2) LoRA training of the tiny LTX-2 under torchrun (2 gloo ranks): the consolidated
LoRA loads in ``LTX2Pipeline`` and changes its video and audio."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch

from vtrain.testing.helpers import run_distributed
from vtrain_ltx2.testing import tiny_ltx2_config

DATA = textwrap.dedent("""
    from vtrain_ltx2.synthetic import SyntheticAVPlugin

    build_dataset = SyntheticAVPlugin(count=4, frames=9).build_dataset
""")


def _render(pipeline: object) -> tuple[np.ndarray, np.ndarray]:
    pipeline.set_progress_bar_config(disable=True)
    video, audio = pipeline(prompt="a red square", width=64, height=64, num_frames=9, num_inference_steps=2,
                            max_sequence_length=32, generator=torch.Generator().manual_seed(0), output_type="np",
                            return_dict=False, guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0,
                            audio_guidance_scale=1.0, audio_stg_scale=0.0, audio_modality_scale=1.0,
                            spatio_temporal_guidance_blocks=None)
    return np.asarray(video), audio.float().numpy()


def test_sharded_lora_loads_in_ltx2_pipeline(ltx2_tiny_dir: Path, tmp_path: Path) -> None:
    from diffusers import LTX2Pipeline

    (tmp_path / "data.py").write_text(DATA)
    out = tmp_path / "lora"
    config = tiny_ltx2_config(ltx2_tiny_dir, out, max_train_steps=2, train_batch_size=1, fsdp_enable=True,
                              learning_rate=2e-2, lora_rank=4, ltx2_lora_targets="all")
    proc = run_distributed(config, tmp_path, [tmp_path / "data.py"], port=29671, plugins=("vtrain_ltx2.plugin",))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "FSDP2: 2 processes" in proc.stdout
    plain_video, plain_audio = _render(LTX2Pipeline.from_pretrained(ltx2_tiny_dir))
    pipeline = LTX2Pipeline.from_pretrained(ltx2_tiny_dir)
    pipeline.load_lora_weights(out)
    video, audio = _render(pipeline)
    assert np.abs(video - plain_video).max() > 1e-4 or np.abs(audio - plain_audio).max() > 1e-6
