"""Sharded (FSDP2) training of the tiny LTX-Video under torchrun (2 gloo ranks): the consolidated
LoRA loads in ``LTXPipeline`` and the consolidated full fine-tune is a diffusers transformer folder."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import torch

from vtrain.testing.helpers import run_distributed
from vtrain_ltxvideo.testing import lora_output_change, tiny_ltx_config

DATA = textwrap.dedent("""
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    build_dataset = SyntheticDataPlugin(count=4, frames=9).build_dataset
""")


def _train(ltx_tiny_dir: Path, tmp_path: Path, name: str, port: int, **overrides: object) -> Path:
    (tmp_path / "data.py").write_text(DATA)
    out = tmp_path / name
    config = tiny_ltx_config(ltx_tiny_dir, out, max_train_steps=2, train_batch_size=1, fsdp_enable=True,
                             learning_rate=1e-2, **overrides)
    proc = run_distributed(config, tmp_path, [tmp_path / "data.py"], port=port, plugins=("vtrain_ltxvideo.plugin",))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "FSDP2: 2 processes" in proc.stdout
    return out


def test_sharded_lora_loads_in_ltx_pipeline(ltx_tiny_dir: Path, tmp_path: Path) -> None:
    out = _train(ltx_tiny_dir, tmp_path, "lora", 29651)
    assert lora_output_change(ltx_tiny_dir, out) > 0  # LTXPipeline.load_lora_weights(out), as a user would


def test_sharded_full_finetune_is_a_diffusers_transformer(ltx_tiny_dir: Path, tmp_path: Path) -> None:
    from diffusers import LTXPipeline, LTXVideoTransformer3DModel

    out = _train(ltx_tiny_dir, tmp_path, "full", 29652, model_type="full")
    trained = LTXVideoTransformer3DModel.from_pretrained(out / "transformer")
    original = LTXVideoTransformer3DModel.from_pretrained(ltx_tiny_dir, subfolder="transformer")
    saved = json.loads((out / "transformer" / "config.json").read_text())
    assert saved["_class_name"] == "LTXVideoTransformer3DModel"  # not fully_shard's FSDP<Name> subclass
    changed = [not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), original.state_dict().values())]
    assert any(changed) and len(changed) == len(original.state_dict())
    pipeline = LTXPipeline.from_pretrained(ltx_tiny_dir, transformer=trained)
    assert pipeline.transformer is trained
