"""Token routing (:class:`vtrain.family.TokenRouting`) for ``LTXVideoTransformer3DModel``'s blocks.

An ``LTXVideoTransformerBlock`` call carries three inputs aligned with the video tokens: the hidden
states ``(B, S, D)``, the modulation ``temb`` ``(B, 1 or S, 6D)`` (per token when image-to-video gives
the clean first frame timestep 0) and the rotary ``(cos, sin)`` pair ``(B, S, D)``. The prompt and its
mask are not token-aligned and stay whole.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from vtrain.family import ModelBundle

_SIGNATURES: dict[type, inspect.Signature] = {}


def bind_block_call(block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
    """The call's arguments by parameter name (positional under gradient checkpointing, keywords otherwise)."""
    kind = type(block)
    if kind not in _SIGNATURES:
        _SIGNATURES[kind] = inspect.signature(kind.forward)
    return _SIGNATURES[kind].bind(block, *args, **kwargs)


def unbind(bound: inspect.BoundArguments) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for the block's ``__call__`` (without ``self``)."""
    return bound.args[1:], dict(bound.kwargs)


def routing_blocks(bundle: ModelBundle) -> Sequence[Any]:
    return bundle.model.transformer_blocks


def block_tokens(block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return bind_block_call(block, args, kwargs).arguments["hidden_states"]


def subset_block_inputs(block: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                        take: Callable[[Any, int], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    bound = bind_block_call(block, args, kwargs)
    values = bound.arguments
    values["hidden_states"] = take(values["hidden_states"], 1)
    values["temb"] = take(values["temb"], 1)
    rope = values.get("image_rotary_emb")
    if rope is not None:
        values["image_rotary_emb"] = tuple(take(part, 1) for part in rope)
    return unbind(bound)


def replace_block_tokens(output: Any, replace: Callable[[Any], Any]) -> Any:
    return replace(output)
