"""Opt-in defaults for a whole test session of vtrain or a plugin.

Enable them in the top-level ``conftest.py`` of a test suite::

    pytest_plugins = ["vtrain.testing.pytest_defaults"]

They set, for the session and any ``vtrain`` subprocess it starts: the hub, transformers and W&B
offline, telemetry off, and the ``tinyflow`` test family loaded in every run (``VTRAIN_PLUGINS``);
and, for every test, the ``vtrain_offline`` fixture. vtrain's own tests opt in from the
repository's ``conftest.py``. Without this line nothing of it happens (``pip install vtrain``
must not change other projects' test sessions).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from vtrain.testing.pytest_plugin import TINYFLOW_PLUGIN, with_plugin_module


def pytest_configure(config: pytest.Config) -> None:
    from vtrain.plugins import PLUGINS_ENV

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ[PLUGINS_ENV] = with_plugin_module(os.environ.get(PLUGINS_ENV, ""), TINYFLOW_PLUGIN)


@pytest.fixture(autouse=True)
def _vtrain_offline_everywhere(vtrain_offline: None) -> Iterator[None]:
    yield
