"""Small media helpers shared by the services: read video frames, encode GIFs and previews."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def read_frames(path: Path, max_frames: int = 64) -> Any:
    """The frames of a video file as a uint8 array ``(T, H, W, 3)`` (decoded with PyAV)."""
    import av
    import numpy as np

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames)


def gif_bytes(frames: Any, fps: int = 8) -> bytes:
    """Encode uint8 frames ``(T, H, W, 3)`` as an animated GIF."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=max(1, 1000 // max(fps, 1)),
                   loop=0)
    return buffer.getvalue()


def to_uint8_frames(pixels: Any) -> Any:
    """Float pixels ``(T, C, H, W)`` or ``(C, H, W)`` in [0, 1] -> uint8 ``(T, H, W, 3)``."""
    import numpy as np
    import torch

    tensor = pixels.detach().float().cpu() if isinstance(pixels, torch.Tensor) else torch.as_tensor(pixels).float()
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    tensor = tensor[:, :3].clamp(0, 1)
    return (tensor.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
