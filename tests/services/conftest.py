"""Fixtures for the run-service tests.

The runs load plugins explicitly (autoload off): tinyflow plus the services under test, so
these tests do not depend on the other bundled plugins being importable at the moment.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SERVICES = (
    "vtrain.services.optimizers",
    "vtrain.services.ema",
    "vtrain.services.eval_loss",
    "vtrain.services.trackers",
    "vtrain.services.webhooks",
    "vtrain.services.hub",
)


@pytest.fixture
def service_runner() -> Callable[..., Any]:
    """``service_runner(config, plugins=(...extra objects...))`` -> Runner with tinyflow and every service."""
    from vtrain.runner import Runner

    def build(config: dict[str, Any], plugins: tuple[Any, ...] = (), **kwargs: Any) -> Any:
        return Runner.from_config(config, plugins=["vtrain.testing.plugin", *SERVICES, *plugins], autoload=False,
                                  **kwargs)

    return build


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    lines = (Path(output_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]
