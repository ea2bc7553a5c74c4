"""Token routing (:class:`vtrain.family.TokenRouting`) for ``LTX2VideoTransformer3DModel``'s blocks.

The video stream is routed; the audio stream stays whole (it attends to the kept video tokens in the
video-to-audio cross-attention while video tokens are routed). Inputs of an ``LTX2VideoTransformerBlock``
call aligned with the video tokens: ``hidden_states`` ``(B, S, D)``, the modulations ``temb``,
``temb_ca_scale_shift``, ``temb_ca_gate`` and ``temb_prompt`` ``(B, 1 or S, k*D)``, the rotary pairs
``video_rotary_emb`` and ``ca_video_rotary_emb`` (``(B, S, D)`` interleaved or ``(B, heads, S, r)`` split),
and the masks over video tokens (``self_attention_mask`` on both token axes, ``a2v_cross_attention_mask``
on its queries, ``v2a_cross_attention_mask`` on its keys). IC-LoRA reference tokens are part of the video
sequence and are routed like the others.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vtrain.family import ModelBundle

_SIGNATURES: dict[type, inspect.Signature] = {}
_MODULATIONS = ("temb", "temb_ca_scale_shift", "temb_ca_gate", "temb_prompt")
_ROPES = ("video_rotary_emb", "ca_video_rotary_emb")
# token axes of the masks, from the end (a mask may carry a heads axis): (..., queries, keys)
_MASK_AXES = {"self_attention_mask": (-2, -1), "a2v_cross_attention_mask": (-2,), "v2a_cross_attention_mask": (-1,)}


def _bind(block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
    kind = type(block)
    if kind not in _SIGNATURES:
        _SIGNATURES[kind] = inspect.signature(kind.forward)
    return _SIGNATURES[kind].bind(block, *args, **kwargs)


def routing_blocks(bundle: ModelBundle) -> Sequence[Any]:
    return bundle.model.transformer_blocks


def block_tokens(block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return _bind(block, args, kwargs).arguments["hidden_states"]


def subset_block_inputs(block: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                        take: Callable[[Any, int], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    bound = _bind(block, args, kwargs)
    values = bound.arguments
    values["hidden_states"] = take(values["hidden_states"], 1)
    for name in _MODULATIONS:
        if values.get(name) is not None:
            values[name] = take(values[name], 1)
    for name in _ROPES:
        rope = values.get(name)
        if rope is not None:  # split rope is (B, heads, S, r): the tokens are on axis 2
            values[name] = tuple(take(part, 2 if part.dim() == 4 else 1) for part in rope)
    for name, axes in _MASK_AXES.items():
        mask = values.get(name)
        if mask is not None:
            for axis in axes:
                mask = take(mask, axis)
            values[name] = mask
    return bound.args[1:], dict(bound.kwargs)


def replace_block_tokens(output: Any, replace: Callable[[Any], Any]) -> Any:
    video, audio = output
    return replace(video), audio
