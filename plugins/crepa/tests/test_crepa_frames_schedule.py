"""Frame and patch matching, and the weight schedule."""

from __future__ import annotations

import pytest
import torch

from vtrain_crepa.frames import frame_groups, pooling_plan, resize_patch_grid, token_grid
from vtrain_crepa.schedule import WeightSchedule


def test_causal_vae_frame_groups() -> None:
    assert frame_groups(9, 2, factor=8, offset=1) == [[0], list(range(1, 9))]
    assert frame_groups(17, 3, factor=8, offset=1)[2] == list(range(9, 17))
    assert frame_groups(5, 5, factor=8, offset=1) == [[0], [1], [2], [3], [4]]
    assert frame_groups(8, 2, factor=4, offset=0) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert frame_groups(10, 3, factor=1, offset=0) == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match="cannot match"):
        frame_groups(2, 3, factor=1, offset=0)


def test_pooling_plans() -> None:
    groups = [[0], [1, 2, 3, 4]]
    encoded, matrix = pooling_plan(groups, "mean")
    assert encoded == [0, 1, 2, 3, 4]
    assert matrix.tolist() == [[1, 0, 0, 0, 0], [0, 0.25, 0.25, 0.25, 0.25]]
    encoded, matrix = pooling_plan(groups, "middle")
    assert encoded == [0, 3] and matrix.tolist() == [[1, 0], [0, 1]]


def test_token_grid() -> None:
    assert token_grid(8, 2, 4) == (2, 4)
    assert token_grid(2, 2, 4) == (1, 2)  # a 2x2 spatial patch
    with pytest.raises(ValueError, match="captured.grid"):
        token_grid(3, 2, 4)


def test_patch_grid_shrinks_by_averaging_and_keeps_row_major_order() -> None:
    features = torch.arange(16.0).view(1, 4, 4, 1)
    out = resize_patch_grid(features, 2, 2)
    assert out.shape == (1, 4, 1)
    assert out[0, :, 0].tolist() == [2.5, 4.5, 10.5, 12.5]
    assert resize_patch_grid(features, 8, 8).shape == (1, 64, 1)


def test_weight_schedule() -> None:
    constant = WeightSchedule(0.5)
    assert [constant.weight(s, 10) for s in (0, 9)] == [0.5, 0.5]
    warm = WeightSchedule(0.5, warmup_steps=4)
    assert [warm.weight(s, 10) for s in range(5)] == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5])
    ramp = WeightSchedule(1.0, end=0.0, cutoff_step=0)
    assert [ramp.weight(s, 10) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    cut = WeightSchedule(1.0, end=0.5, cutoff_step=4)
    assert [cut.weight(s, 10) for s in (0, 2, 3, 4, 8)] == pytest.approx([1.0, 0.75, 0.625, 0.0, 0.0])
