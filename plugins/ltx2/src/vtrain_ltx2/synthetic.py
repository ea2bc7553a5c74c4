"""Synthetic clips with sound: a coloured shape crosses a dark background while a tone follows it.

The tone's pitch rises with the shape's horizontal position (a chirp for left-to-right motion) and its
stereo pan follows it, so the audio and video of one clip are related and a model can learn the link.
Used by the tests, the benchmark and ``write_av_clip`` (mp4 files with an AAC track for the data layer).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.1, 0.2, 0.9), "yellow": (0.95, 0.9, 0.1),
}
MOTIONS = ("moves from left to right", "slides from top to bottom")
SHAPES = ("square", "circle")
LOW_HZ, HIGH_HZ = 220.0, 880.0


@dataclass(frozen=True)
class ClipSpec:
    colour: str
    shape: str
    motion: str

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} {self.motion} with a rising tone"


def clip_specs(count: int) -> list[ClipSpec]:
    specs = [ClipSpec(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS]
    return [specs[i % len(specs)] for i in range(count)]


def _position(spec: ClipSpec, progress: float) -> tuple[float, float]:
    """The shape's centre as fractions of (width, height) at ``progress`` in [0, 1]."""
    return (0.2 + 0.6 * progress, 0.5) if spec.motion.startswith("moves") else (0.5, 0.2 + 0.6 * progress)


def render_clip(spec: ClipSpec, frames: int, height: int, width: int) -> torch.Tensor:
    """A (F, 3, H, W) clip in [0, 1]."""
    import torch

    video = torch.full((frames, 3, height, width), 0.08)
    size = max(4, min(height, width) // 3)
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    colour = torch.tensor(COLOURS[spec.colour]).view(3, 1, 1)
    for index in range(frames):
        fx, fy = _position(spec, index / max(1, frames - 1))
        cx, cy = fx * width, fy * height
        if spec.shape == "square":
            inside = ((xs - cx).abs() <= size / 2) & ((ys - cy).abs() <= size / 2)
        else:
            inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= (size / 2) ** 2
        video[index] = torch.where(inside, colour, video[index])
    return video


def render_audio(spec: ClipSpec, seconds: float, sample_rate: int, channels: int = 2) -> torch.Tensor:
    """(channels, samples) in [-1, 1]: pitch follows the shape's position, stereo pan its x, loudness its colour."""
    import torch

    samples = max(1, round(seconds * sample_rate))
    t = torch.arange(samples, dtype=torch.float64) / sample_rate
    progress = (t / max(seconds, 1e-6)).clamp(0, 1)
    fx, fy = _position(spec, 0.0)
    travel = progress if spec.motion.startswith("moves") else 1 - progress  # horizontal: rising; vertical: falling
    frequency = LOW_HZ * (HIGH_HZ / LOW_HZ) ** travel
    phase = 2 * math.pi * torch.cumsum(frequency, 0) / sample_rate
    amplitude = 0.25 + 0.1 * list(COLOURS).index(spec.colour)
    tone = amplitude * torch.sin(phase)
    if spec.shape == "square":  # a brighter timbre for squares
        tone = tone + 0.3 * amplitude * torch.sin(3 * phase)
    pan = (0.2 + 0.6 * progress) if spec.motion.startswith("moves") else torch.full_like(progress, fx)
    stereo = torch.stack([tone * (1 - pan), tone * pan]).float()
    return stereo[:channels] if channels <= 2 else stereo.repeat(channels, 1)[:channels]


def write_av_clip(path: Path, spec: ClipSpec, frames: int, height: int, width: int, fps: int = 24,
                  sample_rate: int = 16000, with_audio: bool = True) -> Path:
    """An mp4 of the clip (H.264) with its tone as an AAC track (``diffusers.utils.encode_video``, PyAV)."""
    import numpy as np
    from diffusers.utils import encode_video

    path.parent.mkdir(parents=True, exist_ok=True)
    video = render_clip(spec, frames, height, width).permute(0, 2, 3, 1).numpy().astype(np.float32)
    audio = render_audio(spec, frames / fps, sample_rate) if with_audio else None
    encode_video(video, fps=fps, output_path=str(path), audio=audio, audio_sample_rate=sample_rate if with_audio else None)
    return path


class EncodedAVDataset:
    """An in-memory :class:`vtrain.data.base.TrainDataset` of clips with sound, encoded by ``encode_batch``."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples = samples

    @classmethod
    def build(cls, encode: Any, count: int, frames: int, height: int, width: int, sample_rate: int, fps: int = 24,
              with_audio: bool = True, reference_scale: int = 0) -> EncodedAVDataset:
        """``reference_scale`` > 0 adds IC-LoRA reference latents: the same clip, colours inverted, at 1/scale size."""
        import torch

        samples = []
        for spec in clip_specs(count):
            pixels = render_clip(spec, frames, height, width).unsqueeze(0)
            sample: dict[str, Any] = {"latents": encode({"pixels": pixels})["latents"][0].cpu(),
                                      "fps": torch.tensor(float(fps))}
            if with_audio:
                audio = render_audio(spec, frames / fps, sample_rate).unsqueeze(0)
                sample["audio_latents"] = encode({"audio": audio})["audio_latents"][0].cpu()
            if reference_scale:
                reference = 1 - render_clip(spec, frames, height // reference_scale, width // reference_scale)
                sample["reference_latents"] = encode({"pixels": reference.unsqueeze(0)})["latents"][0].cpu()
            text = encode({"captions": [spec.caption]})
            sample.update({key: value[0].cpu() for key, value in text.items()})
            samples.append(sample)
        return cls(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.samples[index]

    def bucket_of(self, index: int) -> Hashable:
        return "x".join(str(s) for s in self.samples[index]["latents"].shape[1:])

    def describe(self) -> list[str]:
        return [f"synthetic clips with sound: {len(self)} samples"]


class SyntheticAVPlugin:
    """A plugin whose ``build_dataset`` encodes synthetic clips with sound through the run's own hooks."""

    def __init__(self, count: int = 8, frames: int = 9, height: int = 64, width: int = 64, with_audio: bool = True,
                 reference_scale: int = 0) -> None:
        self.count, self.frames, self.height, self.width = count, frames, height, width
        self.with_audio, self.reference_scale = with_audio, reference_scale
        self.dataset: EncodedAVDataset | None = None

    from vtrain.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def build_dataset(self, bundle: Any, config: Any, family: Any) -> EncodedAVDataset:
        def encode(batch: dict[str, Any]) -> dict[str, Any]:
            return family.encode_batch(bundle, batch, config)

        self.dataset = EncodedAVDataset.build(encode, self.count, self.frames, self.height, self.width,
                                              family.traits.audio_sample_rate, with_audio=self.with_audio,
                                              reference_scale=self.reference_scale)
        return self.dataset
