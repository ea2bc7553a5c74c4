"""vtrain-offload: group offload and model CPU offload through the ``place_model`` phase.

This slice declares the options so SimpleTuner configs are recognised; the offload itself
lands with the memory issue, and until then a non-default value is refused, not ignored.
"""

from __future__ import annotations

from typing import Any

from vtrain.hookspecs import hookimpl

_PLANNED = {"status": "planned", "planned_note": "group offload is not built yet", "category": "offload"}


@hookimpl
def add_options(registry: Any) -> None:
    registry.add("enable_group_offload", "bool", False, "Offload groups of transformer blocks to CPU between uses.",
                 **_PLANNED)
    registry.add("group_offload_type", "str", "block_level", "block_level or leaf_level.", **_PLANNED)
    registry.add("group_offload_blocks_per_group", "int", 1, "Blocks moved together (block_level).", **_PLANNED)
    registry.add("group_offload_use_stream", "bool", False, "Overlap transfers with compute on a CUDA stream.",
                 **_PLANNED)
    registry.add("group_offload_to_disk_path", "path", None, "Stage offloaded weights on disk instead of RAM.",
                 **_PLANNED)
    registry.add("enable_model_cpu_offload", "bool", False, "Move whole models to the accelerator only while used.",
                 **_PLANNED)
