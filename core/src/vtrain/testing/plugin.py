"""The ``tinyflow`` test family as a plugin. Not an entry point: tests load it (``-p vtrain.testing.plugin``,
the ``tinyflow_plugin`` fixture or ``VTRAIN_PLUGINS``), so a user's run never sees it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vtrain.hookspecs import hookimpl

FAMILIES = ("tinyflow",)


@hookimpl
def add_options(registry: Any) -> None:
    common = {"families": FAMILIES, "category": "tinyflow test family"}
    registry.add("tinyflow_num_samples", "int", 32, "Synthetic samples in the tinyflow dataset.", minimum=1,
                 maximum=1_000_000, **common)
    registry.add("tinyflow_width", "int", 32, "Hidden width of the tinyflow model.", minimum=4, maximum=8192, **common)
    registry.add("tinyflow_depth", "int", 2, "Blocks in the tinyflow model.", minimum=1, maximum=256, **common)
    registry.add("tinyflow_classes", "int", 4, "Classes (the stand-in for prompts) in the tinyflow data.", minimum=1,
                 maximum=100_000, **common)


@hookimpl
def register_families(register: Callable[[Any], None]) -> None:
    from vtrain.testing.tinyflow import TinyFlowFamily

    register(TinyFlowFamily())


@hookimpl
def build_dataset(config: Any, family: Any) -> Any:
    """tinyflow generates its data; other families fall through to the next implementation."""
    if family.name == "tinyflow" and not config.data_backend_config:
        return family.build_dataset(config)
    return None
