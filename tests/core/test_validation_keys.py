"""SimpleTuner's validation switches: ``validation_disable`` and ``validation_disable_unconditional``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

VALIDATION = {"validation_prompt": "a red cube", "validation_num_inference_steps": 2, "validation_resolution": "32x32",
              "max_train_steps": 2}


def _files(output: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in (output / "validation").rglob("*.npy")}


def test_validation_disable_renders_nothing(tinyflow_config: dict[str, Any], make_runner: Any, tmp_path: Path) -> None:
    result = make_runner({**tinyflow_config, **VALIDATION, "validation_disable": True}).run()
    assert result.steps == 2 and not result.validation and not _files(tmp_path / "out")
    result = make_runner({**tinyflow_config, **VALIDATION, "output_dir": str(tmp_path / "on")}).run()
    assert _files(tmp_path / "on") == {"step-0/validation-32x32.npy", "step-2/validation-32x32.npy"}


def test_validation_disable_unconditional_false_adds_the_empty_prompt(tinyflow_config: dict[str, Any], make_runner: Any,
                                                                      tmp_path: Path) -> None:
    make_runner({**tinyflow_config, **VALIDATION, "validation_disable_unconditional": False}).run()
    assert _files(tmp_path / "out") == {f"step-{s}/{n}-32x32.npy" for s in (0, 2) for n in ("validation", "unconditional")}


def test_validation_using_datasets_needs_a_family_that_can(tinyflow_config: dict[str, Any], make_runner: Any) -> None:
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="validation_using_datasets.*cannot condition validation"):
        make_runner({**tinyflow_config, "validation_using_datasets": True}).run()
    with pytest.raises(ConfigError, match="eval_dataset_id.*names a dataset of data_backend_config"):
        make_runner({**tinyflow_config, "eval_dataset_id": "held-out"}).run()
