"""Capturing one transformer block's hidden states during the training forward (for CREPA)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vtrain.family import ModelBundle


@dataclass
class CapturedHiddenStates:
    """Filled after the forward: ``hidden_states`` is (batch, frames, tokens_per_frame, dim)."""

    hidden_states: Any = None
    block_index: int = 0


@contextlib.contextmanager
def capture_hidden_states(bundle: ModelBundle, block_index: int) -> Iterator[CapturedHiddenStates]:
    """Hook block ``block_index`` of the transformer; the grid size comes from the forward's own arguments.

    Only the first output after each top-level forward is kept, so a gradient-checkpointing
    recomputation in the backward pass does not overwrite it.
    """
    model = bundle.model
    blocks = model.transformer_blocks
    if not -len(blocks) <= block_index < len(blocks):
        raise ValueError(f"block_index {block_index} is out of range: this transformer has {len(blocks)} blocks")
    captured = CapturedHiddenStates(block_index=block_index)
    grid: dict[str, Any] = {}

    def before_forward(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        grid.update(frames=kwargs.get("num_frames"), fresh=True)

    def after_block(_module: Any, _args: Any, output: Any) -> None:
        if not grid.get("fresh"):
            return
        grid["fresh"] = False
        hidden = output[0] if isinstance(output, tuple) else output
        batch, tokens, dim = hidden.shape
        frames = grid.get("frames") or 1
        captured.hidden_states = hidden.reshape(batch, frames, tokens // frames, dim)

    handles = [model.register_forward_pre_hook(before_forward, with_kwargs=True),
               blocks[block_index].register_forward_hook(after_block)]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
