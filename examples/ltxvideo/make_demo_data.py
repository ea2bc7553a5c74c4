"""Create the clips the LTX-Video CPU demo trains on, if absent.

    python examples/ltxvideo/make_demo_data.py [--root demo] [--clips 16]

Writes ``<root>/blue-squares/clip-NNN.mp4`` (9 frames, 64x64: a blue square crossing a dark frame
to the left or the right) with a ``.txt`` caption beside each (``caption_strategy=textfile``).
Blue is the colour the demo's base model (``examples/ltxvideo/demo-base``) never saw. Then train
with ``vtrain run --config examples/ltxvideo/demo_config.json`` (or ``make demo``).

:func:`make_clips` writes the older mixed set of coloured shapes at any size (used by tests).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FRAMES, SIZE, FPS = 9, 64, 25


def _write(video: object, path: Path, caption: str, fps: int) -> Path:
    import numpy as np
    from diffusers.utils import export_to_video

    frames = video.permute(0, 2, 3, 1).numpy().astype(np.float32)  # type: ignore[attr-defined]
    export_to_video(list(frames), str(path), fps=fps)
    path.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
    return path


def make_clips(folder: Path, count: int, frames: int, height: int, width: int, fps: int) -> list[Path]:
    """Clips of coloured squares and circles moving across the frame, captioned."""
    from vtrain_ltxvideo.synthetic import clip_specs, render_clip

    folder.mkdir(parents=True, exist_ok=True)
    return [_write(render_clip(spec, frames, height, width), folder / f"clip-{index:03d}.mp4", spec.caption, fps)
            for index, spec in enumerate(clip_specs(count))]


def make_square_clips(folder: Path, colour: str, count: int, fps: int = FPS) -> list[Path]:
    """``count`` clips of a ``colour`` square moving right or left (alternating) at spread-out heights."""
    from vtrain_ltxvideo.synthetic import SQUARE_DIRECTIONS, render_square_clip, square_caption, square_side

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        direction = SQUARE_DIRECTIONS[index % 2]
        top = (index * 5) % (SIZE - square_side(SIZE) + 1)
        video = render_square_clip(colour, direction, FRAMES, SIZE, top=top)
        paths.append(_write(video, folder / f"clip-{index:03d}.mp4", square_caption(colour, direction), fps))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="demo", help="folder for the clips")
    parser.add_argument("--clips", type=int, default=16, help="number of clips")
    args = parser.parse_args(argv)
    clips = Path(args.root) / "blue-squares"
    if not any(clips.glob("*.mp4")):
        made = make_square_clips(clips, "blue", args.clips)
        print(f"wrote {len(made)} captioned clips to {clips}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
