"""The CREPA objective against hand computations, including edge frames with a single neighbour."""

from __future__ import annotations

import math

import pytest
import torch

from vtrain_crepa.loss import crepa_loss, frame_similarity, neighbour_weights


def _reference(projected: torch.Tensor, target: torch.Tensor, distance: int, tau: float) -> float:
    """The issue's formula written out with loops over batch, frames, neighbours and tokens."""
    batch, frames, tokens, _ = projected.shape

    def sim(b: int, f: int, g: int) -> float:
        total = 0.0
        for t in range(tokens):
            p, e = projected[b, f, t], target[b, g, t]
            total += float(p @ e) / (float(p.norm()) * float(e.norm()))
        return total / tokens

    per_sample = []
    for b in range(batch):
        acc = 0.0
        for f in range(frames):
            acc += sim(b, f, f)
            for k in range(1, distance + 1):
                weight = math.exp(-k / tau)
                if f + k < frames:
                    acc += weight * sim(b, f, f + k)
                if f - k >= 0:
                    acc += weight * sim(b, f, f - k)
        per_sample.append(acc / frames)
    return -sum(per_sample) / batch


def test_three_frames_by_hand() -> None:
    """Projected frames all point along e1 (scaled, so normalisation matters); encoder frames are
    e1, (e1+e2)/sqrt2 and e2: sim(f, g) is 1, r = 1/sqrt2 and 0 for g = 0, 1, 2 whatever f is."""
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    projected = torch.stack([3.0 * e1, 0.5 * e1, 2.0 * e1]).view(1, 3, 1, 2).expand(1, 3, 2, 2).clone()
    target = torch.stack([e1, 5.0 * (e1 + e2), 0.1 * e2]).view(1, 3, 1, 2).expand(1, 3, 2, 2).clone()
    r, w = 1 / math.sqrt(2), math.exp(-1.0)
    # frame 0: itself + right neighbour only; frame 1: both sides; frame 2: itself + left neighbour only
    expected = -((1 + w * r) + (r + w * (1 + 0)) + (0 + w * r)) / 3
    out = crepa_loss(projected, target, distance=1, tau=1.0)
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    assert out.alignment == pytest.approx((1 + r + 0) / 3, abs=1e-6)


def test_distance_zero_is_the_diagonal_only() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    projected = torch.stack([e1, e1]).view(1, 2, 1, 2)
    target = torch.stack([e1, e2]).view(1, 2, 1, 2)
    assert float(crepa_loss(projected, target, distance=0, tau=1.0).loss) == pytest.approx(-(1 + 0) / 2)


@pytest.mark.parametrize(("distance", "tau"), [(1, 1.0), (2, 0.5), (5, 2.0)])
def test_matches_the_written_out_formula(distance: int, tau: float) -> None:
    generator = torch.Generator().manual_seed(3)
    projected = torch.randn(2, 4, 3, 5, generator=generator)
    target = torch.randn(2, 4, 3, 5, generator=generator)
    out = crepa_loss(projected, target, distance, tau)
    assert float(out.loss) == pytest.approx(_reference(projected, target, distance, tau), abs=1e-5)


def test_neighbour_weights_edges() -> None:
    w = neighbour_weights(4, distance=2, tau=1.0)
    assert w[0].tolist() == pytest.approx([1.0, math.exp(-1), math.exp(-2), 0.0])
    assert w[3].tolist() == pytest.approx([0.0, math.exp(-2), math.exp(-1), 1.0])
    assert torch.equal(w, w.T)


def test_gradient_reaches_the_projection_only_through_the_loss() -> None:
    projected = torch.randn(1, 3, 2, 4, requires_grad=True)
    target = torch.randn(1, 3, 2, 4)
    crepa_loss(projected, target, 1, 1.0).loss.backward()
    assert projected.grad is not None and projected.grad.abs().sum() > 0


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="must agree"):
        frame_similarity(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 5, 4))
    with pytest.raises(ValueError, match="encoder frames"):
        crepa_loss(torch.zeros(1, 2, 3, 4), torch.zeros(1, 3, 3, 4), 1, 1.0)
