"""Group offload on the tiny LTX-Video model (RAM and disk, block and leaf level): the hooks really
move the frozen block weights, adapters never move, training matches the plain run, the adapter loads
in a plain LTXPipeline, and validation runs with offload on."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vtrain_ltxvideo.synthetic import SyntheticDataPlugin


def _prepare(config: dict[str, Any]) -> tuple[Any, Any]:
    from vtrain.testing.helpers import prepare_bundle

    return prepare_bundle(config, seed=3)  # the same LoRA initialisation in every run


def _train(runner: Any, bundle: Any, steps: int) -> list[float]:
    from vtrain.testing.helpers import train_steps

    dataset = SyntheticDataPlugin(count=4, frames=9).build_dataset(bundle=bundle, config=runner.config,
                                                                    family=runner.family)
    return train_steps(runner, bundle, [dataset[i] for i in range(len(dataset))], steps, lr=3e-3)


@pytest.fixture(scope="module")
def plain_losses(ltx_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[float]:
    config = _base(ltx_tiny_dir, tmp_path_factory.mktemp("plain"))
    runner, bundle = _prepare(config)
    return _train(runner, bundle, 8)


def _base(tiny: Path, out: Path) -> dict[str, Any]:
    return {"model_family": "ltxvideo", "pretrained_model_name_or_path": str(tiny), "output_dir": str(out / "out"),
            "max_train_steps": 4, "train_batch_size": 2, "learning_rate": 3e-3, "mixed_precision": "no",
            "base_model_default_dtype": "fp32", "lora_rank": 8, "lora_target": "attention+ffn", "seed": 1,
            "max_grad_norm": 1.0, "grad_clip_method": "norm", "gradient_checkpointing": True}


@pytest.mark.parametrize("settings", [
    {"group_offload_type": "block_level"},
    {"group_offload_type": "block_level", "group_offload_to_disk_path": "DISK"},
    {"group_offload_type": "block_level", "group_offload_blocks_per_group": 2, "group_offload_to_disk_path": "DISK"},
    {"group_offload_type": "leaf_level", "group_offload_to_disk_path": "DISK"},
], ids=["block-ram", "block-disk", "two-blocks-disk", "leaf-disk"])
def test_group_offload_trains_like_the_plain_run(settings: dict[str, Any], ltx_tiny_dir: Path, tmp_path: Path,
                                                 plain_losses: list[float]) -> None:
    from vtrain_offload import group

    settings = {k: (str(tmp_path / "offload") if v == "DISK" else v) for k, v in settings.items()}
    disk = settings.get("group_offload_to_disk_path")
    if disk:  # a file left by an earlier run must not be reused
        Path(disk).mkdir()
        (Path(disk) / "group_stale.safetensors").write_bytes(b"stale")
    runner, bundle = _prepare({**_base(ltx_tiny_dir, tmp_path), "enable_group_offload": True, **settings})
    model = bundle.model

    moving = group.offloaded_ids(model)
    assert group.groups(model), "no group-offloading hooks installed"
    block_weights = {id(p) for n, p in model.named_parameters() if n.startswith("transformer_blocks.")
                     and "lora_" not in n}
    assert moving == block_weights | {id(b) for b in model.transformer_blocks.buffers()}
    trainables = [p for _, p in bundle.trainable_named_parameters()]
    assert trainables and not any(id(p) in moving for p in trainables)
    assert all(id(p) not in moving for p in model.proj_in.parameters())

    lora = model.transformer_blocks[0].attn1.to_q.lora_A["default"].weight
    base = model.transformer_blocks[0].attn1.to_q.base_layer.weight
    lora_ptr, base_ptr = lora.data_ptr(), base.data_ptr()
    losses = _train(runner, bundle, 8)
    assert all(math.isfinite(v) for v in losses)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-4, atol=1e-5)
    assert lora.data_ptr() == lora_ptr  # adapters stay where the optimizer holds them
    if disk:
        files = sorted(p.name for p in Path(disk).iterdir())
        assert "group_stale.safetensors" not in files and len(files) >= 2, files
        assert base.data_ptr() != base_ptr  # the frozen weight was reloaded from disk by the hooks


def test_run_with_group_offload_validates_and_saves_a_portable_lora(ltx_offload_config: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    from diffusers import LTXPipeline

    from vtrain.runner import Runner

    config = {**ltx_offload_config, "enable_group_offload": True, "group_offload_to_disk_path": str(tmp_path / "off"),
              "gradient_checkpointing": True,
              "max_train_steps": 6, "validation_step_interval": 3, "validation_prompt": "a red square",
              "validation_resolution": "64x64", "validation_num_video_frames": 9,
              "validation_num_inference_steps": 2, "disable_benchmark": True}
    result = Runner.from_config(config, plugins=[SyntheticDataPlugin(count=4, frames=9, is_i2v=False)]).run()
    losses = [json.loads(line)["loss"] for line in (Path(config["output_dir"]) / "metrics.jsonl").open()]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert [p.name for p in result.validation] == ["validation-64x64.mp4"] * 2

    def render(pipeline: Any) -> np.ndarray:
        pipeline.set_progress_bar_config(disable=True)
        return pipeline(prompt="a red square", width=64, height=64, num_frames=9, num_inference_steps=2,
                        generator=torch.Generator().manual_seed(0), output_type="np").frames[0]

    base = config["pretrained_model_name_or_path"]
    plain = render(LTXPipeline.from_pretrained(base))
    pipeline = LTXPipeline.from_pretrained(base)
    pipeline.load_lora_weights(config["output_dir"])
    assert np.abs(render(pipeline) - plain).max() > 1e-4


def test_block_swap_offloads_only_the_last_blocks(ltx_tiny_dir: Path, tmp_path: Path, plain_losses: list[float]) -> None:
    """musubi_blocks_to_swap N: block-level group offload of the last N blocks only; training is unchanged."""
    from vtrain_offload import group

    runner, bundle = _prepare({**_base(ltx_tiny_dir, tmp_path), "musubi_blocks_to_swap": 1})
    blocks = bundle.model.transformer_blocks
    moving = group.offloaded_ids(bundle.model)
    last = {id(t) for t in [*blocks[-1].parameters(), *blocks[-1].buffers()] if not t.requires_grad}
    assert moving and moving == last  # only the last block's frozen weights move
    assert all(p.device.type == "cpu" for p in blocks[0].parameters())  # the others stay resident
    assert bundle.meta["group_offload"].last_blocks == 1
    assert any("of the last 1 blocks (block swap)" in line for line in runner.hooks.describe_run(_Run(runner, bundle)))
    losses = _train(runner, bundle, 8)
    assert np.allclose(losses, plain_losses, rtol=1e-4, atol=1e-6)


class _Run:
    def __init__(self, runner: Any, bundle: Any) -> None:
        self.config, self.bundle, self.family = runner.config, bundle, runner.family
        self.dataset, self.output_dir, self.accelerator = None, Path("."), None
