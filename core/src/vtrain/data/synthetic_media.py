"""Generated media for tests and benchmarks: clips of moving coloured shapes, images, and broken files."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _frame(width: int, height: int, index: int, seed: int) -> Any:
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
    frame[..., 2] = (yy * 255 // max(height - 1, 1)).astype(np.uint8)
    size = max(4, min(width, height) // 4)
    cx = (seed * 37 + index * 3) % max(width - size, 1)
    cy = (seed * 11 + index * 2) % max(height - size, 1)
    colour = ((seed * 67) % 256, (seed * 151 + 90) % 256, (seed * 29 + 180) % 256)
    frame[cy : cy + size, cx : cx + size] = colour
    return frame


def write_clip(path: Path, width: int, height: int, frames: int, fps: int = 25, seed: int = 0,
               codec: str = "libx264", faststart: bool = False) -> Path:
    """Write an mp4 of ``frames`` frames: a gradient with a moving coloured square (PyAV).

    ``faststart`` puts the index at the front, so a truncated copy still opens but cannot decode to the end.
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "28"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(_frame(width, height, index, seed), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """Write a PNG/JPEG (by suffix) with the same pattern as one clip frame."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_frame(width, height, 0, seed)).save(path)
    return path


def write_caption(media: Path, text: str) -> Path:
    caption = media.with_suffix(".txt")
    caption.write_text(text + "\n", encoding="utf-8")
    return caption


def write_zero_byte(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_garbage(path: Path, size: int = 4096, seed: int = 0) -> Path:
    import random

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def truncate_copy(source: Path, target: Path, keep: float = 0.4) -> Path:
    """A copy of ``source`` cut to ``keep`` of its bytes (a download that stopped midway)."""
    data = source.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[: max(1, int(len(data) * keep))])
    return target
