"""pytest fixtures for vtrain and its plugins (registered through the ``pytest11`` entry point).

- ``vtrain_offline``: the hub stays offline (autouse).
- ``make_runner``: build a :class:`vtrain.Runner` from a dict with per-test ``output_dir``.
- ``tinyflow_config``: a small, fast ``tinyflow`` config dict.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(autouse=True)
def vtrain_offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


@pytest.fixture
def tinyflow_config(tmp_path: Path) -> dict[str, Any]:
    """A tinyflow run that takes a second or two on CPU."""
    return {
        "model_family": "tinyflow",
        "output_dir": str(tmp_path / "out"),
        "max_train_steps": 12,
        "train_batch_size": 2,
        "learning_rate": 3e-3,
        "mixed_precision": "no",
        "base_model_default_dtype": "fp32",
        "lora_rank": 4,
        "seed": 7,
        "max_grad_norm": 1.0,
        "grad_clip_method": "norm",
        "tinyflow_num_samples": 16,
    }


@pytest.fixture
def make_runner() -> Callable[..., Any]:
    """``make_runner(config_dict, **kwargs)`` -> Runner (plugins autoloaded unless told otherwise)."""
    from vtrain.runner import Runner

    def build(config: dict[str, Any], **kwargs: Any) -> Any:
        return Runner.from_config(config, **kwargs)

    return build
