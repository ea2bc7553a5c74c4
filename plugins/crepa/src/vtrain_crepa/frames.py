"""Matching encoder frames to latent frames and encoder patches to latent tokens."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

POOLINGS = ("mean", "middle")


def frame_groups(pixel_frames: int, latent_frames: int, factor: int, offset: int) -> list[list[int]]:
    """The pixel frames each latent frame stands for.

    - as many pixel frames as latent frames: one each;
    - ``factor * (latent_frames - 1) + offset`` pixel frames (a causal video VAE, 8k+1 for
      LTX-Video): the first ``offset`` frames make latent frame 0, then groups of ``factor``;
    - ``factor * latent_frames`` pixel frames: groups of ``factor``;
    - anything else: ``pixel_frames`` split into ``latent_frames`` near-equal consecutive runs.
    """
    if latent_frames < 1 or pixel_frames < latent_frames:
        raise ValueError(f"CREPA cannot match {pixel_frames} decoded frames to {latent_frames} latent frames")
    if pixel_frames == latent_frames:
        return [[i] for i in range(pixel_frames)]
    if factor > 1 and offset > 0 and pixel_frames == factor * (latent_frames - 1) + offset:
        return [list(range(offset))] + [list(range(offset + i * factor, offset + (i + 1) * factor))
                                        for i in range(latent_frames - 1)]
    if factor > 1 and pixel_frames == factor * latent_frames:
        return [list(range(i * factor, (i + 1) * factor)) for i in range(latent_frames)]
    edges = [round(i * pixel_frames / latent_frames) for i in range(latent_frames + 1)]
    return [list(range(edges[i], edges[i + 1])) for i in range(latent_frames)]


def pooling_plan(groups: list[list[int]], pooling: str) -> tuple[list[int], torch.Tensor]:
    """(pixel frames to encode, (latent_frames, encoded) matrix that pools their features per latent frame).

    ``mean`` encodes every frame and averages each group; ``middle`` encodes only the middle frame of
    each group (one encoder pass per latent frame: cheaper with a large encoder).
    """
    import torch

    if pooling not in POOLINGS:
        raise ValueError(f"crepa_frame_pooling must be one of {POOLINGS}, got {pooling!r}")
    chosen = [frames if pooling == "mean" else [frames[len(frames) // 2]] for frames in groups]
    encoded = sorted({f for frames in chosen for f in frames})
    column = {f: i for i, f in enumerate(encoded)}
    matrix = torch.zeros(len(groups), len(encoded))
    for row, frames in enumerate(chosen):
        for f in frames:
            matrix[row, column[f]] = 1.0 / len(frames)
    return encoded, matrix


def token_grid(tokens: int, latent_height: int, latent_width: int) -> tuple[int, int]:
    """(rows, columns) of ``tokens`` per frame covering a ``latent_height x latent_width`` latent
    (a family's spatial patching divides both sides by the same patch size)."""
    if tokens == latent_height * latent_width:
        return latent_height, latent_width
    patch = math.sqrt(latent_height * latent_width / tokens)
    rows, cols = round(latent_height / patch), round(latent_width / patch)
    if rows * cols != tokens:
        raise ValueError(f"CREPA cannot lay {tokens} tokens per frame on a {latent_height}x{latent_width} latent; "
                         "the family's capture_hidden_states should set captured.grid")
    return rows, cols


def resize_patch_grid(features: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(N, gh, gw, D) encoder patch features -> (N, rows*cols, D) on the latent token grid.

    Shrinking averages the patches each token covers (area); growing interpolates bilinearly.
    """
    import torch

    x = features.permute(0, 3, 1, 2)
    if (rows, cols) != tuple(x.shape[-2:]):
        shrink = rows <= x.shape[-2] and cols <= x.shape[-1]
        x = torch.nn.functional.interpolate(x, size=(rows, cols), mode="area" if shrink else "bilinear",
                                            **({} if shrink else {"align_corners": False}))
    return x.flatten(2).transpose(1, 2)
