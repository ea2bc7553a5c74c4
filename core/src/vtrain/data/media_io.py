"""Reading video and image files: probing their size/length and decoding only the frames needed.

Videos are read with decord; where decord cannot open or decode a file, PyAV is used. Frames are
decoded in small chunks and resized/cropped as they arrive, so memory depends on the frames
used and the training size, never on the clip's length or the source resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.data.geometry import Geometry

if TYPE_CHECKING:
    import torch

CHUNK = 8  # frames decoded (and resized) at once


class MediaError(Exception):
    """A file cannot be read; the message is the reason shown to the user."""


@dataclass(frozen=True)
class MediaInfo:
    """What a probe learns about a file."""

    width: int
    height: int
    frames: int
    fps: float
    reader: str  # decord, pyav or pil


def probe(path: Path, is_video: bool) -> MediaInfo:
    """Size, frame count and fps of ``path``; raises :class:`MediaError` with the reason."""
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")
    if not is_video:
        return _probe_image(path)
    try:
        return _probe_decord(path)
    except MediaError as decord_error:
        try:
            return _probe_pyav(path)
        except MediaError as pyav_error:
            raise MediaError(f"unreadable video: decord: {decord_error}; PyAV: {pyav_error}") from None


def _probe_image(path: Path) -> MediaInfo:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
    except Exception as exc:  # PIL raises many kinds
        raise MediaError(f"unreadable image: {type(exc).__name__}: {exc}") from None
    return MediaInfo(width, height, 1, 0.0, "pil")


def _probe_decord(path: Path) -> MediaInfo:
    try:
        import decord

        reader = decord.VideoReader(str(path), num_threads=1)
        frames = len(reader)
        height, width = reader[0].shape[:2] if frames else (0, 0)
        fps = float(reader.get_avg_fps())
        del reader
    except Exception as exc:
        raise MediaError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if frames <= 0 or width <= 0:
        raise MediaError("no frames")
    return MediaInfo(int(width), int(height), int(frames), fps, "decord")


def _probe_pyav(path: Path) -> MediaInfo:
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = stream.frames
            fps = float(stream.average_rate or 0)
            width, height = stream.codec_context.width, stream.codec_context.height
            if not frames:  # containers without a frame count: count packets (no decoding)
                frames = sum(1 for packet in container.demux(stream) if packet.size)
    except Exception as exc:
        raise MediaError(f"{type(exc).__name__}: {exc}") from None
    if frames <= 0 or width <= 0:
        raise MediaError("no video frames")
    return MediaInfo(int(width), int(height), int(frames), fps, "pyav")


def load_pixels(path: Path, info: MediaInfo, geometry: Geometry) -> torch.Tensor:
    """Frames ``0 .. geometry.frames-1`` of ``path``, resized and cropped: float (F, C, H, W) in [0, 1].

    Raises :class:`MediaError` when the file cannot deliver them (truncated, corrupt).
    """
    if info.reader == "pil":
        return _fit(_load_image(path), geometry)
    if info.reader == "decord":
        try:
            return _decord_frames(path, geometry)
        except MediaError:
            pass  # fall through to PyAV
    return _pyav_frames(path, geometry)


def _fit(frames_uint8: Any, geometry: Geometry) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> resized, cropped (F, 3, h, w) float in [0, 1]."""
    import numpy as np
    import torch

    tensor = torch.from_numpy(np.require(frames_uint8, dtype=np.uint8, requirements="W")).permute(0, 3, 1, 2).float().div_(255.0)
    pre_w, pre_h = geometry.pre_size
    if tensor.shape[-2:] != (pre_h, pre_w):
        down = pre_h < tensor.shape[-2] or pre_w < tensor.shape[-1]
        tensor = torch.nn.functional.interpolate(tensor, size=(pre_h, pre_w), mode="bilinear", align_corners=False,
                                                 antialias=down)
    left, top, width, height = geometry.crop_box
    return tensor[:, :, top : top + height, left : left + width].clamp_(0.0, 1.0)


def _load_image(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except Exception as exc:
        raise MediaError(f"unreadable image: {type(exc).__name__}: {exc}") from None
    return array[None]


def _decord_frames(path: Path, geometry: Geometry) -> torch.Tensor:
    try:
        import decord

        reader = decord.VideoReader(str(path), num_threads=1)
        if len(reader) < geometry.frames:
            raise MediaError(f"only {len(reader)} frames, {geometry.frames} needed")
        out = _output(geometry)
        for start in range(0, geometry.frames, CHUNK):
            indices = list(range(start, min(start + CHUNK, geometry.frames)))
            out[start : start + len(indices)] = _fit(reader.get_batch(indices).asnumpy(), geometry)
        del reader
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"decord: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return out


def _output(geometry: Geometry) -> torch.Tensor:
    import torch

    width, height = geometry.size
    return torch.empty(geometry.frames, 3, height, width)


def _pyav_frames(path: Path, geometry: Geometry) -> torch.Tensor:
    import numpy as np

    out = _output(geometry)
    pending: list[Any] = []
    decoded = 0
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                pending.append(frame.to_ndarray(format="rgb24"))
                decoded += 1
                if len(pending) == CHUNK or decoded == geometry.frames:
                    out[decoded - len(pending) : decoded] = _fit(np.stack(pending), geometry)
                    pending = []
                if decoded == geometry.frames:
                    break
    except Exception as exc:
        raise MediaError(f"PyAV: {type(exc).__name__}: {exc}") from None
    if decoded < geometry.frames:
        raise MediaError(f"truncated: decoded {decoded} of the {geometry.frames} frames needed")
    return out


class NoAudio(MediaError):
    """The file has no audio stream (the clip trains without sound; not an unreadable file)."""


def probe_audio(path: Path) -> MediaInfo:
    """An audio file's length: ``frames`` is its sample count at ``fps`` = its sample rate (PyAV)."""
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")
    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise NoAudio("no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            seconds = float(container.duration / 1_000_000) if container.duration else \
                float((stream.duration or 0) * (stream.time_base or 0))
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"unreadable audio: PyAV: {type(exc).__name__}: {exc}") from None
    if rate <= 0 or seconds <= 0:
        raise MediaError("no audio samples")
    return MediaInfo(0, 0, int(seconds * rate), float(rate), "pyav-audio")


def load_audio(path: Path, frames: int, fps: float, sample_rate: int, channels: int) -> torch.Tensor:
    """The sound of video frames ``0 .. frames-1``: float (channels, round(frames / fps * sample_rate)) in [-1, 1].
    For an audio file, ``frames / fps`` is simply the seconds to read from its start.

    Decoded with PyAV and resampled to ``sample_rate`` with ``channels`` (1 mono, 2 stereo: a mono source is
    duplicated, a stereo one down-mixed for mono). The window starts at the first video frame's time (audio
    before it is skipped, a late audio start is padded with silence), so sound and the frames used line up.
    A stream that ends up to a tenth short is padded with silence (encoder padding); shorter ones raise
    :class:`MediaError`, a file without an audio stream :class:`NoAudio`.
    """
    import numpy as np
    import torch

    if fps <= 0:
        raise MediaError("the video has no frame rate, so its sound cannot be aligned to the frames")
    wanted = max(1, round(frames / fps * sample_rate))
    layout = {1: "mono", 2: "stereo"}.get(channels)
    if layout is None:
        raise MediaError(f"audio with {channels} channels is not supported (1 or 2)")
    chunks: list[Any] = []
    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise NoAudio("no audio stream")
            stream = container.streams.audio[0]
            video_start = _start_seconds(container.streams.video[0]) if container.streams.video else 0.0
            skip = round((video_start - _start_seconds(stream)) * sample_rate)  # > 0: audio starts earlier
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
            have = -skip
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(channels, -1))
                    have += chunks[-1].shape[1]
                if have >= wanted:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(channels, -1))
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"PyAV audio: {type(exc).__name__}: {exc}") from None
    data = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), dtype=np.float32)
    data = data[:, skip:] if skip > 0 else np.pad(data, ((0, 0), (-skip, 0)))
    if data.shape[1] < wanted * 0.9:
        raise MediaError(f"the audio stream lasts {data.shape[1] / sample_rate:.2f}s, the {frames} frames used "
                         f"need {wanted / sample_rate:.2f}s")
    data = np.pad(data[:, :wanted], ((0, 0), (0, max(0, wanted - data.shape[1]))))
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).clamp_(-1.0, 1.0)


def _start_seconds(stream: Any) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)
