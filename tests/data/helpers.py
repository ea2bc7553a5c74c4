"""Building the data layer directly (without a Runner) with the tinyflow family's real encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtrain.config import ResolvedConfig
from vtrain.data.build import DataContext, build_datasets
from vtrain.testing.tinyflow import TinyFlowFamily

BASE = {"seed": 3, "train_batch_size": 1, "gradient_accumulation_steps": 1, "vae_batch_size": 2,
        "caption_dropout_probability": 0.0, "compress_disk_cache": False, "delete_problematic_images": False,
        "offload_during_startup": False, "tinyflow_classes": 4, "pretrained_model_name_or_path": None,
        "base_model_default_dtype": "fp32", "learning_rate": 1e-4}


class CountingEncoder:
    """The tinyflow encoder, counting calls and encoded items; can fail after ``fail_after`` pixel batches."""

    def __init__(self, config: ResolvedConfig, fail_after: int | None = None) -> None:
        self.family = TinyFlowFamily()
        self.config = config
        self.pixel_items = 0
        self.caption_items = 0
        self.pixel_calls = 0
        self.fail_after = fail_after

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if "pixels" in batch:
            if self.fail_after is not None and self.pixel_calls >= self.fail_after:
                raise KeyboardInterrupt("simulated kill")
            self.pixel_calls += 1
            self.pixel_items += batch["pixels"].shape[0]
        else:
            self.caption_items += len(batch["captions"])
        return self.family.encode_batch(None, batch, self.config)  # type: ignore[arg-type]


def make_config(backends: Any, **overrides: Any) -> ResolvedConfig:
    return ResolvedConfig(values={**BASE, "data_backend_config": backends, **overrides})


def build(backends: Any, encoder: CountingEncoder | None = None, rank: int = 0, world_size: int = 1,
          messages: list[str] | None = None, barrier: Any = None, **overrides: Any) -> tuple[Any, CountingEncoder]:
    config = make_config(backends, **overrides)
    encoder = encoder or CountingEncoder(config)
    family = TinyFlowFamily()
    ctx = DataContext(encode=encoder, family=family.name, traits=family.traits,
                      identity={"text": {"classes": config["tinyflow_classes"]}}, rank=rank, world_size=world_size,
                      barrier=barrier or (lambda: None),
                      say=(messages.append if messages is not None else (lambda m: None)), show_progress=False)
    return build_datasets(config, ctx), encoder


def cache_files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*.safetensors*")}
