"""Routing tokens around a family's blocks with forward hooks (TREAD, arXiv 2501.04765).

Every block of a route runs on the route's kept tokens only: its pre-hook cuts the token sequence and
the token-aligned side inputs (through the family's :class:`vtrain.family.TokenRouting`), its post-hook
scatters the outputs back into the full sequence, where the skipped tokens keep the hidden states they
entered the route with. Each block call is self-contained (input and output are full sequences in the
original order), so gradient checkpointing, which re-runs one block call at a time, and observers of a
block's output (CREPA's capture) see what they expect.

Which tokens a route keeps is drawn once per training forward, uniformly at random per sample, from a
generator seeded with a number drawn from the torch CPU generator when the forward starts (so the run's
seed decides it and a resume, which restores that generator, repeats it). The draw inside the blocks
uses that private generator only, so a gradient-checkpointing recomputation (which replays the global
RNG state of the original call) is not thrown off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vtrain_tread.settings import Route

if TYPE_CHECKING:
    import torch

_SEED_RANGE = 2**62


@dataclass
class _ForwardRoutes:
    """The kept-token indices of one training forward, drawn lazily at each route's first block."""

    seed: int
    indices: dict[int, Any] = field(default_factory=dict)

    def index(self, number: int, route: Route, tokens: torch.Tensor) -> torch.Tensor | None:
        """(B, kept) sorted token indices for route ``number``, or None when the route keeps every token."""
        if number not in self.indices:
            import torch

            batch, count = tokens.shape[0], tokens.shape[1]
            kept = route.kept(count)
            if kept >= count:
                self.indices[number] = None
            else:
                generator = torch.Generator(device=tokens.device)
                generator.manual_seed((self.seed + number) % _SEED_RANGE)
                scores = torch.rand(batch, count, generator=generator, device=tokens.device)
                self.indices[number] = scores.argsort(dim=1)[:, :kept].sort(dim=1).values
        return self.indices[number]


def token_taker(index: torch.Tensor, tokens: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``take(tensor, dim)``: the entries of the kept tokens along ``dim`` when ``dim`` holds ``tokens`` entries."""
    batch, kept = index.shape

    def take(tensor: torch.Tensor, dim: int) -> torch.Tensor:
        dim = dim % tensor.dim()
        if tensor.shape[dim] != tokens:
            return tensor
        if tensor.shape[0] != batch:  # a batch-broadcast input (positions shared by every sample)
            tensor = tensor.expand(batch, *tensor.shape[1:])
        view = [1] * tensor.dim()
        view[0], view[dim] = batch, kept
        sizes = list(tensor.shape)
        sizes[dim] = kept
        return tensor.gather(dim, index.to(tensor.device).view(view).expand(sizes))

    return take


class TokenRouter:
    """One run's TREAD state: the routes, the hooks on the family's blocks, the current forward's draws.

    :param family: a family offering :class:`vtrain.family.TokenRouting`.
    :param routes: resolved routes (non-negative, sorted, non-overlapping).
    """

    def __init__(self, family: Any, routes: list[Route]) -> None:
        self.family = family
        self.routes = routes
        self.active = False
        self._draws = any(route.selection_ratio > 0 for route in routes)
        self._forward: _ForwardRoutes | None = None
        self._pending: dict[int, tuple[Any, Any] | None] = {}
        self._handles: list[Any] = []
        self._blocks = 0
        self._work: list[float] | None = None  # per routed block call of the last training forward: kept / all

    def install(self, model: Any, blocks: Any) -> None:
        """Hook ``model`` (to start each forward) and the blocks of every route."""
        self._blocks = len(blocks)
        self._handles.append(model.register_forward_pre_hook(self._before_model, with_kwargs=True))
        for number, route in enumerate(self.routes):
            for position in range(route.start, route.end + 1):
                block = blocks[position]
                self._handles.append(block.register_forward_pre_hook(self._pre_hook(number), with_kwargs=True))
                self._handles.append(block.register_forward_hook(self._after_block, with_kwargs=True))

    def remove(self) -> None:
        """Take every hook off (the model computes as if TREAD were not there)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.release()

    def release(self) -> None:
        """Drop tensors kept between a block's hooks (a recomputation that stopped early leaves some)."""
        self._pending.clear()

    @contextlib.contextmanager
    def training_forward(self) -> Iterator[None]:
        """Route the forwards inside (only those with gradients on and the model in training mode)."""
        self.active, self._work = True, None
        try:
            yield
        finally:
            self.active = False

    def token_share(self) -> float | None:
        """Share of the block-token work the last routed forward did (1.0: nothing skipped); None if none ran."""
        if self._work is None or not self._blocks:
            return None
        routed = len(self._work)
        return (sum(self._work) + (self._blocks - routed)) / self._blocks

    # -- hooks ----------------------------------------------------------------------------------

    def _before_model(self, module: Any, _args: Any, _kwargs: Any) -> None:
        import torch

        if not torch.is_grad_enabled():
            return  # never routed; the last routed forward's draws stay for its backward's recomputation
        self._pending.clear()
        if self.active and module.training:
            seed = int(torch.randint(0, _SEED_RANGE, (1,)).item()) if self._draws else 0
            self._forward, self._work = _ForwardRoutes(seed), []
        else:
            self._forward = None

    def _pre_hook(self, number: int) -> Callable[..., Any]:
        route = self.routes[number]

        def before_block(block: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            import torch

            current = self._forward
            self._pending[id(block)] = None
            if current is None or not torch.is_grad_enabled():
                return None
            tokens = self.family.block_tokens(block, args, kwargs)
            index = current.index(number, route, tokens)
            if index is None:
                return None
            args, kwargs = self.family.subset_block_inputs(block, args, kwargs, token_taker(index, tokens.shape[1]))
            self._pending[id(block)] = (tokens, index)
            if self.active and self._work is not None:
                self._work.append(index.shape[1] / tokens.shape[1])
            return args, kwargs

        return before_block

    def _after_block(self, block: Any, _args: Any, _kwargs: Any, output: Any) -> Any:
        entry = self._pending.pop(id(block), None)
        if entry is None:
            return None
        tokens, index = entry

        def scatter(kept: torch.Tensor) -> torch.Tensor:
            positions = index[:, :, None].expand(-1, -1, kept.shape[-1])
            # the block's output dtype (under autocast it may differ from the input's), as without routing
            return tokens.to(kept.dtype).scatter(1, positions, kept)

        return self.family.replace_block_tokens(block, output, scatter)
