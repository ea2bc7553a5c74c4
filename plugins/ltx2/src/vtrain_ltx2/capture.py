"""Capturing one transformer block's video hidden states during the training forward (for CREPA)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vtrain.family import ModelBundle


@dataclass
class CapturedHiddenStates:
    """Filled after the forward: ``hidden_states`` (batch, frames, tokens_per_frame, dim) of the video stream."""

    hidden_states: Any = None
    block_index: int = 0
    grid: tuple[int, int, int] | None = None


@contextlib.contextmanager
def capture_hidden_states(bundle: ModelBundle, block_index: int) -> Iterator[CapturedHiddenStates]:
    """Hook block ``block_index``; the video grid comes from the forward's own arguments.

    Only the video stream's tokens of the target clip are kept (IC-LoRA reference tokens, appended after
    them, are dropped), and only the first output after each top-level forward, so a gradient-checkpointing
    recomputation does not overwrite it.
    """
    model = bundle.model
    blocks = model.transformer_blocks
    if not -len(blocks) <= block_index < len(blocks):
        raise ValueError(f"block_index {block_index} is out of range: this transformer has {len(blocks)} blocks")
    captured = CapturedHiddenStates(block_index=block_index)
    state: dict[str, Any] = {}

    def before_forward(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        state.update(grid=(kwargs.get("num_frames") or 1, kwargs.get("height") or 1, kwargs.get("width") or 1),
                     fresh=True)

    def after_block(_module: Any, _args: Any, output: Any) -> None:
        if not state.get("fresh"):
            return
        state["fresh"] = False
        hidden = output[0] if isinstance(output, tuple) else output
        frames, height, width = state["grid"]
        batch, _, dim = hidden.shape
        captured.grid = (frames, height, width)
        captured.hidden_states = hidden[:, : frames * height * width].reshape(batch, frames, height * width, dim)

    handles = [model.register_forward_pre_hook(before_forward, with_kwargs=True),
               blocks[block_index].register_forward_hook(after_block)]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
