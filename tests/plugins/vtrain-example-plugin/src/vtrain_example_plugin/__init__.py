"""A third-party plugin in one module: an option, a loss wrapper and a step counter."""

from __future__ import annotations

from typing import Any

from vtrain import hookimpl

CALLS: list[str] = []


@hookimpl
def add_options(registry: Any) -> None:
    registry.add("example_extra_loss", "float", 0.0, "Add this constant times the squared mean prediction... "
                 "a toy loss term, to prove wrappers work.", minimum=0, category="example plugin")


@hookimpl(wrapper=True)
def compute_loss(bundle: Any, batch: Any, config: Any, state: Any) -> Any:
    out = yield
    if config.example_extra_loss:
        penalty = sum(p.float().pow(2).sum() for _, p in bundle.trainable_named_parameters())
        out.add_term("example_l2", config.example_extra_loss * penalty)
    return out


@hookimpl
def on_step_end(run: Any, step: int, logs: Any) -> None:
    CALLS.append(f"step:{step}")
    marker = run.output_dir / "example_plugin_steps.txt"
    with open(marker, "a", encoding="utf-8") as handle:
        handle.write(f"{step}\n")
