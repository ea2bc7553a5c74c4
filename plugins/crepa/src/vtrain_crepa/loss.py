"""The CREPA objective (Cross-Frame Representation Alignment, arXiv 2506.09229).

With ``sim(f, g)`` the patch-mean cosine similarity between projected model frame ``f`` and
encoder frame ``g`` (token ``t`` of one compared with token ``t`` of the other), the term is

    -mean over the batch of (1/F) * sum_f [ sim(f, f) + sum_{k=1..d} exp(-k/tau) * (sim(f, f+k) + sim(f, f-k)) ]

where only neighbours that exist are counted (an edge frame has one side). The plugin multiplies
it by the scheduled weight lambda.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class CrepaLoss:
    """``loss``: the unweighted CREPA term (differentiable); ``alignment``: mean ``sim(f, f)`` (a float)."""

    loss: torch.Tensor
    alignment: float


def neighbour_weights(frames: int, distance: int, tau: float, device: object = None) -> torch.Tensor:
    """(F, F) matrix ``W``: 1 on the diagonal, ``exp(-k/tau)`` at ``|f - g| = k <= distance``, 0 elsewhere."""
    import torch

    index = torch.arange(frames, device=device)
    gap = (index[:, None] - index[None, :]).abs().to(torch.float32)
    weights = torch.exp(-gap / tau)
    weights[gap > distance] = 0.0
    weights.fill_diagonal_(1.0)
    return weights


def frame_similarity(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, F, G): the patch-mean cosine between every projected frame and every target frame.

    :param projected: (B, F, T, D) projected hidden states.
    :param target: (B, G, T, D) encoder features on the same token grid.
    """
    import torch

    if projected.shape[0] != target.shape[0] or projected.shape[2:] != target.shape[2:]:
        raise ValueError(f"CREPA: projected hidden states {tuple(projected.shape)} and encoder features "
                         f"{tuple(target.shape)} must agree in batch, tokens and width")
    p = torch.nn.functional.normalize(projected.float(), dim=-1)
    e = torch.nn.functional.normalize(target.float(), dim=-1)
    return torch.einsum("bftd,bgtd->bfg", p, e) / projected.shape[2]


def crepa_loss(projected: torch.Tensor, target: torch.Tensor, distance: int, tau: float) -> CrepaLoss:
    """The unweighted CREPA term for (B, F, T, D) projected states and (B, F, T, D) encoder features."""
    if projected.shape[1] != target.shape[1]:
        raise ValueError(f"CREPA: {projected.shape[1]} model frames but {target.shape[1]} encoder frames")
    sim = frame_similarity(projected, target)  # (B, F, F)
    frames = sim.shape[1]
    weights = neighbour_weights(frames, distance, tau, device=sim.device)
    per_sample = (sim * weights).sum(dim=(1, 2)) / frames
    alignment = float(sim.detach().diagonal(dim1=1, dim2=2).mean())
    return CrepaLoss(loss=-per_sample.mean(), alignment=alignment)
