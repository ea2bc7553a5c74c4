"""What the demo shows at the end: a before/after GIF, a loss curve and the colour statistic.

Only numpy and Pillow (both installed with vtrain's dependencies) are used for the pictures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NEW_COLOUR = "blue"  # the colour the demo's base model never saw


def validation_video(output_dir: Path, step: int) -> Path:
    """The first text-to-video validation render of ``step``."""
    videos = sorted((output_dir / "validation" / f"step-{step}").glob("*.mp4"))
    if not videos:
        raise FileNotFoundError(f"no validation video under {output_dir / 'validation' / f'step-{step}'}")
    return videos[0]


def colour_share(video: Path, colour: str = NEW_COLOUR) -> float:
    """Mean fraction of pixels within 0.25 of ``colour`` over the decoded frames of ``video``
    (the demo's square, a quarter of the frame wide, scores about 0.06; a clip without that colour, 0)."""
    from vtrain.services.media import read_frames
    from vtrain_ltxvideo.synthetic import colour_fraction

    return colour_fraction(read_frames(video) / 255.0, colour)


def side_by_side_gif(before: Path, after: Path, path: Path, scale: int = 8, fps: int = 4) -> Path:
    """An animated GIF with ``before`` on the left and ``after`` on the right, each ``scale`` times larger."""
    import numpy as np
    from PIL import Image, ImageDraw

    from vtrain.services.media import gif_bytes, read_frames

    left, right = read_frames(before), read_frames(after)
    count = min(len(left), len(right))
    frames = []
    for index in range(count):
        pair = [np.kron(video[index], np.ones((scale, scale, 1), dtype=np.uint8)) for video in (left, right)]
        gap = np.full((pair[0].shape[0], 4 * scale, 3), 255, np.uint8)
        canvas = Image.fromarray(np.concatenate([pair[0], gap, pair[1]], axis=1))
        label = Image.new("RGB", (canvas.width, 14), "white")
        draw = ImageDraw.Draw(label)
        draw.text((4, 1), "before (step 0)", fill="black")
        draw.text((pair[0].shape[1] + gap.shape[1] + 4, 1), "after (LoRA)", fill="black")
        combined = Image.new("RGB", (canvas.width, canvas.height + label.height), "white")
        combined.paste(label, (0, 0))
        combined.paste(canvas, (0, label.height))
        frames.append(np.asarray(combined))
    path.write_bytes(gif_bytes(np.stack(frames), fps=fps))
    return path


def read_losses(metrics: Path) -> list[tuple[int, float]]:
    """(step, loss) from a run's ``metrics.jsonl``."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [(int(row["step"]), float(row["loss"])) for row in rows if "loss" in row and "step" in row]


def loss_curve_png(losses: list[tuple[int, float]], path: Path, size: tuple[int, int] = (640, 360)) -> Path:
    """A line plot of the loss per update (grey) and its running mean (blue), with axis labels."""
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 60, 20, 30, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    steps = [s for s, _ in losses]
    values = [v for _, v in losses]
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def point(step: float, value: float) -> tuple[float, float]:
        x = left + (step - steps[0]) / max(1, steps[-1] - steps[0]) * (width - left - right)
        y = top + (high - value) / span * (height - top - bottom)
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.line([point(s, v) for s, v in losses], fill=(170, 170, 170), width=1)
    window, smoothed, total = max(1, len(values) // 10), [], 0.0
    for index, value in enumerate(values):
        total += value - (values[index - window] if index >= window else 0.0)
        smoothed.append(total / min(index + 1, window))
    draw.line([point(s, v) for s, v in zip(steps, smoothed)], fill=(30, 80, 220), width=2)
    draw.text((left, 8), f"training loss per update (blue: mean of {window})", fill="black")
    draw.text((left, height - bottom + 8), f"update {steps[0]}", fill="black")
    draw.text((width - right - 70, height - bottom + 8), f"update {steps[-1]}", fill="black")
    draw.text((4, top), f"{high:.3f}", fill="black")
    draw.text((4, height - bottom - 12), f"{low:.3f}", fill="black")
    image.save(path)
    return path


def report(output_dir: Path, final_step: int) -> dict[str, Any]:
    """Write ``before-after.gif`` and ``loss.png`` into ``output_dir``; return their paths and the statistic."""
    before, after = validation_video(output_dir, 0), validation_video(output_dir, final_step)
    return {
        "gif": side_by_side_gif(before, after, output_dir / "before-after.gif"),
        "loss_png": loss_curve_png(read_losses(output_dir / "metrics.jsonl"), output_dir / "loss.png"),
        "before": colour_share(before), "after": colour_share(after),
    }
