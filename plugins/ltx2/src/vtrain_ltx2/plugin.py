"""vtrain-ltx2: the LTX-2 family (joint audio + video generation).

Only light imports at module level: ``vtrain --help`` and ``vtrain plugins`` import this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelFamily


@hookimpl
def add_options(registry: Any) -> None:
    """Declare the ``ltx2_`` keys."""
    from vtrain_ltx2.options import declare_options

    declare_options(registry)


@hookimpl
def register_families(register: Callable[[Any], None]) -> None:
    """Register the ``ltx2`` family."""
    from vtrain_ltx2.family import LTX2Family

    register(LTX2Family())


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """Reject ltx2 combinations that cannot work (modes against the data, sizes), before anything is loaded."""
    if family.name != "ltx2":
        return
    from vtrain_ltx2.checks import check_config

    check_config(config, problems)


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    """``vtrain ltx2 make-tiny DIR [--variant 2.0|2.3] [--size tiny|full]``."""
    from vtrain_ltx2.commands import run_ltx2_command

    register("ltx2", run_ltx2_command,
             help="LTX-2 tools: make-tiny DIR [--variant 2.0|2.3] [--size tiny|full] writes a random pipeline folder.")


@hookimpl
def describe_run(run: Any) -> list[str] | None:
    """The detected layout and the modality modes for the start-up summary."""
    if run.family.name != "ltx2" or run.bundle is None:
        return None
    layout = run.bundle.meta.get("layout")
    config = run.config
    conditions = [name for name, on in (("i2v", config.ltx2_i2v_probability > 0 and config.ltx2_video == "generated"),
                                        ("extension", config.ltx2_extension_frames > 0),
                                        ("ic_lora", config.ltx2_ic_lora)) if on]
    lines = [f"ltx2: {layout.describe() if layout else 'layout unknown'}",
             f"ltx2: video {config.ltx2_video}, audio {config.ltx2_audio}; conditions: {', '.join(conditions) or 'none'}"]
    if run.bundle.meta.get("flavour"):
        lines.append(f"ltx2: {run.bundle.meta['flavour']}")
    if run.bundle.meta.get("lora_targets"):
        lines.append(f"ltx2: LoRA targets {run.bundle.meta['lora_targets']}")
    return lines


@hookimpl
def on_run_start(run: Any) -> None:
    """Check the modes against the built data; keep the first IC-LoRA reference for validation."""
    if run.family.name != "ltx2" or run.bundle is None or run.dataset is None:
        return
    from vtrain_ltx2.checks import check_data

    check_data(run.config, run.dataset)
    if run.config.ltx2_ic_lora:
        from vtrain_ltx2.validation import remember_reference

        remember_reference(run.bundle, run.dataset)
