"""Frame and size rules: which frames a sample takes, what size it is trained at, and its bucket.

Pure functions of the source's size and length, the backend settings and the family's traits
(frame factor, alignment), so the same inputs always give the same plan (and the same cache key).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from vtrain.data.spec import MediaBackend


@dataclass(frozen=True)
class Geometry:
    """How one source becomes one training sample.

    :param frames: how many frames (from the first) are read.
    :param pre_size: (width, height) the source is resized to before cropping.
    :param crop_box: (left, top, width, height) cut out of the resized source.
    :param size: (width, height) of the training sample.
    :param step: every ``step``-th source frame is used (``video.frame_rate`` below the clip's rate).
    """

    frames: int
    pre_size: tuple[int, int]
    crop_box: tuple[int, int, int, int]
    size: tuple[int, int]
    step: int = 1

    def as_key(self) -> str:
        stride = f":step{self.step}" if self.step != 1 else ""
        return f"f{self.frames}:pre{self.pre_size}:crop{self.crop_box}:size{self.size}{stride}"


def valid_frame_count(available: int, factor: int, offset: int, interval: int | None = None) -> int:
    """The largest count <= ``available`` of the form ``factor*k + offset`` (and ``interval``-spaced); 0 if none."""
    step = max(factor, 1)
    if interval and interval > 1:
        step = step * interval // math.gcd(step, interval)
    base = offset if factor > 1 else 0
    if available < max(base, 1):
        return 0
    count = base + ((available - base) // step) * step
    if count < 1:
        count += step
    return count if count <= available else 0


def measure(width: float, height: float, resolution_type: str) -> float:
    """A size in the unit of ``resolution_type``: shorter side (pixel), sqrt(area) (pixel_area), megapixels (area)."""
    if resolution_type == "pixel":
        return min(width, height)
    if resolution_type == "pixel_area":
        return math.sqrt(width * height)
    return width * height / 1e6


def scale_to(width: float, height: float, target: float, resolution_type: str) -> float:
    """The factor that brings (width, height) to ``target`` in the unit of ``resolution_type``."""
    current = measure(width, height, resolution_type)
    if resolution_type == "area":
        return math.sqrt(target / current)
    return target / current


def _align(value: float, alignment: int) -> int:
    return max(alignment, int(round(value / alignment)) * alignment)


def target_size(aspect: float, backend: MediaBackend, alignment: int) -> tuple[int, int]:
    """(width, height) of ``aspect`` (w/h) whose size equals the backend's resolution, aligned."""
    unit_w, unit_h = aspect, 1.0
    factor = scale_to(unit_w, unit_h, backend.resolution, backend.resolution_type)
    return _align(unit_w * factor, alignment), _align(unit_h * factor, alignment)


def _stable_fraction(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def plan_geometry(width: int, height: int, frames: int, backend: MediaBackend, alignment: int,
                  content_key: str) -> Geometry:
    """Resize/crop plan for a source of ``width`` x ``height`` pixels and ``frames`` frames to use.

    Sources larger than ``maximum_image_size`` are first shrunk to ``target_downsample_size``.
    Random choices (``crop_style`` random, ``crop_aspect`` random) are drawn from the content key,
    so they are stable across runs and the cache stays valid.
    """
    alignment = max(alignment, 1)
    src_w, src_h = float(width), float(height)
    if backend.maximum_image_size and measure(src_w, src_h, backend.resolution_type) > backend.maximum_image_size:
        goal = backend.target_downsample_size or backend.maximum_image_size
        factor = scale_to(src_w, src_h, goal, backend.resolution_type)
        if factor < 1:
            src_w, src_h = src_w * factor, src_h * factor
    aspect = src_w / src_h
    if not backend.crop:
        size = target_size(aspect, backend, alignment)
        return Geometry(frames, size, (0, 0, *size), size)
    if backend.crop_aspect == "square":
        crop_aspect = 1.0
    elif backend.crop_aspect == "preserve":
        crop_aspect = aspect
    elif backend.crop_aspect == "closest":
        crop_aspect = min(backend.crop_aspect_buckets, key=lambda a: abs(math.log(a / aspect)))
    else:
        choices = backend.crop_aspect_buckets
        crop_aspect = choices[int(_stable_fraction(content_key, "aspect") * len(choices)) % len(choices)]
    size = target_size(crop_aspect, backend, alignment)
    cover = max(size[0] / src_w, size[1] / src_h)
    pre = (max(size[0], int(math.ceil(src_w * cover - 1e-6))), max(size[1], int(math.ceil(src_h * cover - 1e-6))))
    spare_w, spare_h = pre[0] - size[0], pre[1] - size[1]
    if backend.crop_style == "center":
        left, top = spare_w // 2, spare_h // 2
    elif backend.crop_style == "corner":
        left, top = spare_w, spare_h  # bottom-right corner, as SimpleTuner's "corner"
    else:
        left = int(_stable_fraction(content_key, "left") * (spare_w + 1))
        top = int(_stable_fraction(content_key, "top") * (spare_h + 1))
    return Geometry(frames, pre, (left, top, size[0], size[1]), size)


def frames_for(available: int, backend: MediaBackend, factor: int, offset: int) -> tuple[int, str | None]:
    """How many frames a clip of ``available`` frames trains on, or (0, reason) when it is skipped."""
    if not backend.is_video:
        return 1, None
    video = backend.video
    minimum = video.min_frames if video.min_frames is not None else video.num_frames
    if available < minimum:
        return 0, f"{available} frames, fewer than min_frames {minimum}"
    if video.max_frames is not None and available > video.max_frames:
        return 0, f"{available} frames, more than max_frames {video.max_frames}"
    wanted = min(available, video.num_frames)
    interval = video.frame_interval if video.bucket_strategy == "resolution_frames" else None
    count = valid_frame_count(wanted, factor, offset, interval)
    if count == 0:
        return 0, f"{available} frames cannot make a frame count the model accepts ({factor}k+{offset})"
    return count, None


def bucket_key(geometry: Geometry, backend: MediaBackend) -> str:
    """The bucket a sample belongs to. Samples of one key always have the same tensor shapes.

    ``resolution_frames`` gives ``WxH@F``; ``aspect_ratio`` gives the rounded aspect ratio, with
    the size and frame count appended so that differently sized samples never share a batch.
    """
    width, height = geometry.size
    shape = f"{width}x{height}@{geometry.frames}"
    if backend.is_video and backend.video.bucket_strategy == "resolution_frames":
        return shape
    return f"{round(width / height, backend.aspect_bucket_rounding)} ({shape})"
