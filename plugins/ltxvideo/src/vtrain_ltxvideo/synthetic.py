"""Synthetic clips of moving coloured shapes with captions that describe them.

Used by the tests, the benchmark and the demo-data generator. Pixels are ``(F, C, H, W)`` floats
in [0, 1], the layout the data layer hands to ``encode_batch`` (with a batch dimension).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.1, 0.2, 0.9), "yellow": (0.95, 0.9, 0.1),
}
MOTIONS = ("moves from left to right", "slides from top to bottom")
SHAPES = ("square", "circle")


@dataclass(frozen=True)
class ClipSpec:
    colour: str
    shape: str
    motion: str

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} {self.motion} on a dark background"


def clip_specs(count: int) -> list[ClipSpec]:
    specs = [ClipSpec(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS]
    return [specs[i % len(specs)] for i in range(count)]


def render_clip(spec: ClipSpec, frames: int, height: int, width: int) -> torch.Tensor:
    """A (F, 3, H, W) clip in [0, 1]: a shape crossing a dark background."""
    import torch

    video = torch.full((frames, 3, height, width), 0.08)
    size = max(4, min(height, width) // 3)
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    colour = torch.tensor(COLOURS[spec.colour]).view(3, 1, 1)
    for index in range(frames):
        progress = index / max(1, frames - 1)
        if spec.motion.startswith("moves"):
            cx, cy = size / 2 + progress * (width - size), height / 2
        else:
            cx, cy = width / 2, size / 2 + progress * (height - size)
        if spec.shape == "square":
            inside = ((xs - cx).abs() <= size / 2) & ((ys - cy).abs() <= size / 2)
        else:
            inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= (size / 2) ** 2
        video[index] = torch.where(inside, colour, video[index])
    return video


class EncodedClipDataset:
    """An in-memory :class:`vtrain.data.base.TrainDataset` of clips encoded by a family's ``encode_batch``."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples = samples

    @classmethod
    def build(cls, encode: Any, count: int, frames: int, height: int, width: int,
              is_i2v: bool | None = True) -> EncodedClipDataset:
        """``encode(batch) -> dict`` is ``hooks.encode_batch`` bound to a bundle and config."""
        import torch

        samples = []
        for spec in clip_specs(count):
            pixels = render_clip(spec, frames, height, width).unsqueeze(0)
            encoded = encode({"pixels": pixels})
            text = encode({"captions": [spec.caption]})
            sample = {name: value[0].cpu() for name, value in encoded.items()}  # latents (+ latents_std)
            sample.update(prompt_embeds=text["prompt_embeds"][0].cpu(),
                          prompt_attention_mask=text["prompt_attention_mask"][0].cpu())
            if is_i2v is not None:
                sample["is_i2v"] = torch.tensor(bool(is_i2v))
            samples.append(sample)
        return cls(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.samples[index]

    def bucket_of(self, index: int) -> Hashable:
        return "x".join(str(s) for s in self.samples[index]["latents"].shape[1:])

    def describe(self) -> list[str]:
        return [f"synthetic moving-shape clips: {len(self)} samples"]


class SyntheticDataPlugin:
    """A plugin object whose ``build_dataset`` encodes synthetic clips with the run's own hooks."""

    def __init__(self, count: int = 8, frames: int = 9, height: int = 64, width: int = 64,
                 is_i2v: bool | None = True) -> None:
        self.count, self.frames, self.height, self.width, self.is_i2v = count, frames, height, width, is_i2v
        self.dataset: EncodedClipDataset | None = None

    from vtrain.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def build_dataset(self, bundle: Any, config: Any, family: Any) -> EncodedClipDataset:
        def encode(batch: dict[str, Any]) -> dict[str, Any]:
            return family.encode_batch(bundle, batch, config)

        self.dataset = EncodedClipDataset.build(encode, self.count, self.frames, self.height, self.width, self.is_i2v)
        return self.dataset


# The learning demo's clips: a square a quarter of the frame wide, of one colour, crossing a dark
# square frame to the left or the right. The demo's base model is trained on red and green only;
# blue is the colour a LoRA teaches.
SQUARE_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.1), "blue": (0.15, 0.3, 1.0),
}
SQUARE_DIRECTIONS = ("right", "left")


def square_side(size: int) -> int:
    return size // 4


def square_caption(colour: str, direction: str) -> str:
    return f"a {colour} square moves to the {direction}"


def render_square_clip(colour: str, direction: str, frames: int = 9, size: int = 32, top: int = 12,
                       background: float = 0.08) -> torch.Tensor:
    """A (F, 3, size, size) clip in [0, 1]: the square slides from one edge to the other."""
    import torch

    video = torch.full((frames, 3, size, size), background)
    colour_t = torch.tensor(SQUARE_COLOURS[colour]).view(3, 1, 1)
    side = square_side(size)
    span = size - side
    for index in range(frames):
        progress = index / max(1, frames - 1)
        left = round((progress if direction == "right" else 1 - progress) * span)
        video[index, :, top:top + side, left:left + side] = colour_t
    return video


def random_square_clips(generator: torch.Generator, count: int, colours: tuple[str, ...], frames: int = 9,
                        size: int = 32) -> tuple[torch.Tensor, list[str]]:
    """``count`` clips ``(B, F, 3, H, W)`` in [0, 1] with random colour, direction, height and background."""
    import torch

    clips, captions = [], []
    for _ in range(count):
        colour = colours[int(torch.randint(len(colours), (1,), generator=generator))]
        direction = SQUARE_DIRECTIONS[int(torch.randint(2, (1,), generator=generator))]
        top = int(torch.randint(size - square_side(size) + 1, (1,), generator=generator))
        background = 0.03 + 0.09 * float(torch.rand((), generator=generator))
        clips.append(render_square_clip(colour, direction, frames, size, top, background))
        captions.append(square_caption(colour, direction))
    return torch.stack(clips), captions


def colour_fraction(frames: Any, colour: str, tolerance: float = 0.25) -> float:
    """The fraction of pixels within ``tolerance`` (per channel) of ``colour``; ``frames`` is ``(..., 3)`` in [0, 1].

    A clip showing the demo's square in that colour scores about (1/4)^2 = 0.0625; one without it, 0.
    """
    import numpy as np

    pixels = np.asarray(frames, dtype=np.float32)
    return float((np.abs(pixels - np.asarray(SQUARE_COLOURS[colour], np.float32)).max(-1) < tolerance).mean())
