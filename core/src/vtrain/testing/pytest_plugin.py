"""pytest fixtures for vtrain and its plugins (registered through the ``pytest11`` entry point).

Nothing here runs unless a test asks for it: no autouse fixture, no environment changes at start-up.

- ``vtrain_offline``: the hub stays offline for the test (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``).
- ``tinyflow_plugin``: the ``tinyflow`` test family loads in every run the test builds (through
  ``VTRAIN_PLUGINS``, so ``vtrain`` subprocesses started by the test get it too).
- ``tinyflow_config``: a small, fast ``tinyflow`` config dict (requests ``tinyflow_plugin``).
- ``make_runner``: ``make_runner(config_dict, **kwargs)`` -> :class:`vtrain.Runner`.

A test suite that wants all of this for every test (as vtrain's own does) opts in with
``pytest_plugins = ["vtrain.testing.pytest_defaults"]`` in its top-level ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TINYFLOW_PLUGIN = "vtrain.testing.plugin"


def with_plugin_module(current: str, module: str) -> str:
    """``current`` (a ``VTRAIN_PLUGINS`` value) with ``module`` added once."""
    names = [name.strip() for name in current.split(",") if name.strip()]
    return ",".join(names if module in names else [*names, module])


@pytest.fixture
def vtrain_offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The Hugging Face hub stays offline for this test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


@pytest.fixture
def tinyflow_plugin(monkeypatch: pytest.MonkeyPatch) -> str:
    """Load the ``tinyflow`` test family in this test's runs; returns the plugin's module name."""
    import os

    from vtrain.plugins import PLUGINS_ENV

    monkeypatch.setenv(PLUGINS_ENV, with_plugin_module(os.environ.get(PLUGINS_ENV, ""), TINYFLOW_PLUGIN))
    return TINYFLOW_PLUGIN


@pytest.fixture
def tinyflow_config(tmp_path: Path, tinyflow_plugin: str) -> dict[str, Any]:
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
    """``make_runner(config_dict, **kwargs)`` -> Runner; ``kwargs`` are those of ``Runner.from_config``
    (``plugins``, ``plugin_files``, ``blocked``, ``autoload``, ``overrides``)."""
    from vtrain.runner import Runner

    def build(config: dict[str, Any], **kwargs: Any) -> Any:
        return Runner.from_config(config, **kwargs)

    return build
