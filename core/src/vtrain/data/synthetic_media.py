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


def tone(width: int, frames: int, fps: int, seed: int, rate: int) -> Any:
    """(2, samples) float32: a tone whose pitch follows the square's x position in ``_frame``, panned with it."""
    import numpy as np

    samples = round(frames / fps * rate)
    frame_of = np.minimum((np.arange(samples) * fps / rate).astype(int), frames - 1)
    size = max(4, width // 4)
    x = ((seed * 37 + frame_of * 3) % max(width - size, 1)) / max(width - size, 1)
    phase = 2 * np.pi * np.cumsum(220.0 * 4.0 ** x) / rate
    wave = 0.3 * np.sin(phase)
    return np.stack([wave * (1 - x), wave * x]).astype(np.float32)


def write_clip(path: Path, width: int, height: int, frames: int, fps: int = 25, seed: int = 0,
               codec: str = "libx264", faststart: bool = False, sound_rate: int = 0) -> Path:
    """Write an mp4 of ``frames`` frames: a gradient with a moving coloured square (PyAV).

    ``faststart`` puts the index at the front, so a truncated copy still opens but cannot decode to the end.
    ``sound_rate`` > 0 adds a stereo AAC track at that rate: :func:`tone`, which follows the square.
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
        sound = container.add_stream("aac", rate=sound_rate, layout="stereo") if sound_rate else None
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(_frame(width, height, index, seed), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            audio = av.AudioFrame.from_ndarray(tone(width, frames, fps, seed, sound_rate), format="fltp",
                                               layout="stereo")
            audio.sample_rate, audio.pts = sound_rate, 0  # pts 0: the encoder's priming delay goes to the edit list
            for packet in list(sound.encode(audio)) + list(sound.encode(None)):
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
