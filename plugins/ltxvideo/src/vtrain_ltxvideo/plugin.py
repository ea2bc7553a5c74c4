"""vtrain-ltxvideo: the LTX-Video model family (text-to-video and image-to-video training).

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
    """Declare the ltxvideo keys."""
    from vtrain_ltxvideo.options import declare_options

    declare_options(registry)


@hookimpl
def register_families(register: Callable[[Any], None]) -> None:
    """Register the ``ltxvideo`` family."""
    from vtrain_ltxvideo.family import LTXVideoFamily

    register(LTXVideoFamily())


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    """Reject ltxvideo combinations that cannot work, before anything is loaded."""
    if family.name != "ltxvideo":
        return
    from vtrain_ltxvideo.checks import check_config

    check_config(config, problems)


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    """``vtrain ltxvideo make-tiny DIR [--size tiny|full]``."""
    from vtrain_ltxvideo.commands import run_ltxvideo_command

    register("ltxvideo", run_ltxvideo_command,
             help="LTX-Video tools: make-tiny DIR [--size tiny|full] writes a random-initialised pipeline folder.")


@hookimpl
def on_run_start(run: Any) -> None:
    """Pick the i2v validation reference from the training data before the first validation."""
    if run.family.name != "ltxvideo" or run.bundle is None or run.dataset is None or run.config.validation_image:
        return
    from vtrain_ltxvideo.validation import remember_reference

    remember_reference(run.bundle, run.dataset)


@hookimpl
def describe_run(run: Any) -> list[str] | None:
    """Start-up summary lines: the image-to-video share, the temporal positions, the latent sampling."""
    if run.family.name != "ltxvideo" or run.bundle is None:
        return None
    from vtrain_ltxvideo.summary import describe

    return describe(run)
