"""Generated media for the data-layer tests: clips of varied sizes and lengths, images, broken files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from vtrain.data.synthetic_media import (
    truncate_copy,
    write_caption,
    write_clip,
    write_garbage,
    write_image,
    write_zero_byte,
)

# name: (width, height, frames); tinyflow's rule is 4k+1 frames and 8-px alignment
CLIPS = {
    "wide_a": (96, 64, 24),
    "wide_b": (96, 64, 30),
    "wide_c": (120, 80, 21),   # same aspect, other size: resized to the same bucket
    "tall_a": (64, 96, 26),
    "tall_b": (64, 96, 40),
    "short": (96, 64, 9),      # under min_frames
}
IMAGES = {"img_a": (80, 80), "img_b": (96, 96), "img_c": (72, 48), "tiny": (20, 20)}


@pytest.fixture(scope="session")
def media_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    videos, images = root / "videos", root / "images"
    for seed, (name, (w, h, f)) in enumerate(CLIPS.items()):
        write_clip(videos / f"{name}.mp4", w, h, f, fps=24, seed=seed + 1)
        write_caption(videos / f"{name}.mp4", f"a clip called {name}")
    write_clip(videos / "nocaption.mp4", 96, 64, 24, seed=9)  # no caption file
    write_zero_byte(videos / "zero.mp4")
    write_caption(videos / "zero.mp4", "zero bytes")
    write_garbage(videos / "garbage.mp4")
    write_caption(videos / "garbage.mp4", "garbage")
    full = write_clip(root / "full.mp4", 96, 64, 40, seed=5, faststart=True)
    truncate_copy(full, videos / "truncated.mp4", 0.5)
    write_caption(videos / "truncated.mp4", "a truncated download")
    for seed, (name, (w, h)) in enumerate(IMAGES.items()):
        write_image(images / f"{name}.png", w, h, seed=seed + 20)
        write_caption(images / f"{name}.png", f"an image called {name}")
    write_garbage(images / "broken.png", 300)
    write_caption(images / "broken.png", "broken image")
    return root


@pytest.fixture
def media(media_master: Path, tmp_path: Path) -> Path:
    """A private copy of the generated media (tests may modify or delete files)."""
    target = tmp_path / "media"
    shutil.copytree(media_master, target)
    return target


def video_backend(media: Path, tmp: Path, **extra: Any) -> dict[str, Any]:
    video = {"num_frames": 17, "min_frames": 17, "bucket_strategy": "aspect_ratio"}
    video.update(extra.pop("video", {}))
    entry = {"id": "clips", "type": "local", "dataset_type": "video", "instance_data_dir": str(media / "videos"),
             "cache_dir_vae": str(tmp / "cache" / "vae" / "clips"), "resolution": 64, "resolution_type": "pixel_area",
             "caption_strategy": "textfile", "crop": False, "repeats": 0, "video": video}
    entry.update(extra)
    return entry


def image_backend(media: Path, tmp: Path, **extra: Any) -> dict[str, Any]:
    entry = {"id": "stills", "type": "local", "dataset_type": "image", "instance_data_dir": str(media / "images"),
             "cache_dir_vae": str(tmp / "cache" / "vae" / "stills"), "resolution": 64, "resolution_type": "pixel_area",
             "minimum_image_size": 32, "caption_strategy": "textfile", "crop": True, "crop_aspect": "square"}
    entry.update(extra)
    return entry


def text_backend(tmp: Path) -> dict[str, Any]:
    return {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
            "cache_dir": str(tmp / "cache" / "text"), "write_batch_size": 4}


def write_backends(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(entries, indent=2))
    return path
