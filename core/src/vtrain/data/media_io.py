"""Reading video and image files: probing their size/length and decoding only the frames needed.

Videos are read with decord; where decord cannot open or decode a file, PyAV is used. Frames are
decoded in small chunks and resized/cropped as they arrive, so memory depends on the frames
used and the training size, never on the clip's length or the source resolution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.data.geometry import Geometry
from vtrain.errors import VtrainError

if TYPE_CHECKING:
    import torch

CHUNK = 8  # frames decoded (and resized) at once


class MediaError(Exception):
    """A file cannot be used; the message is the reason shown to the user.

    ``kind`` says why: ``decode`` (the bytes were read and are not valid media: the only kind
    ``delete_problematic_images`` may delete), ``io`` (the file could not be read: permissions, a
    network share; never deleted) or ``empty`` (0 bytes, perhaps still being written; never deleted).
    """

    def __init__(self, message: str, kind: str = "decode") -> None:
        super().__init__(message)
        self.kind = kind


class MediaProcessingError(VtrainError):
    """A file decoded, but resizing or cropping its frames failed: not a damaged file, so the run
    stops with the file and the sizes named instead of dropping the sample as unreadable."""

    exit_code = 3


def _error_kind(exc: BaseException) -> str:
    """``io`` for operating-system read errors (they carry an errno), else ``decode``.

    PIL reports undecodable images as ``OSError`` subclasses without an errno; PyAV's permission
    and I/O errors subclass the built-in ones with their errno.
    """
    return "io" if isinstance(exc, OSError) and exc.errno is not None else "decode"


@functools.lru_cache(maxsize=1)
def video_decoder() -> str:
    """``decord`` when it can be imported, else ``pyav`` (checked once per process)."""
    try:
        import decord  # noqa: F401
    except Exception:  # ImportError, or a broken native library
        return "pyav"
    return "decord"


_announced: set[str] = set()


def announce_decoder(say: Callable[[str], Any]) -> None:
    """Say once per process which video decoder is in use."""
    decoder = video_decoder()
    if decoder in _announced:
        return
    _announced.add(decoder)
    say("video decoder: decord (PyAV for files decord cannot read)" if decoder == "decord" else
        "video decoder: PyAV (decord is not installed; `pip install decord` reads most videos faster)")


@dataclass(frozen=True)
class MediaInfo:
    """What a probe learns about a file."""

    width: int
    height: int
    frames: int
    fps: float
    reader: str  # decord, pyav or pil


def probe(path: Path, is_video: bool) -> MediaInfo:
    """Size, frame count and fps of ``path``; raises :class:`MediaError` with the reason and its kind
    (an ``OSError`` from ``stat`` is passed on: the file could not be read)."""
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)", kind="empty")
    if not is_video:
        return _probe_image(path)
    if video_decoder() == "pyav":
        try:
            return _probe_pyav(path)
        except MediaError as pyav_error:
            raise MediaError(f"unreadable video: PyAV: {pyav_error}", pyav_error.kind) from None
    try:
        return _probe_decord(path)
    except MediaError as decord_error:
        try:
            return _probe_pyav(path)
        except MediaError as pyav_error:
            kind = "io" if "io" in (decord_error.kind, pyav_error.kind) else "decode"
            what = "cannot read video" if kind == "io" else "unreadable video"
            raise MediaError(f"{what}: decord: {decord_error}; PyAV: {pyav_error}", kind) from None


def _probe_image(path: Path) -> MediaInfo:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
    except Exception as exc:  # PIL raises many kinds
        kind = _error_kind(exc)
        what = "cannot read image" if kind == "io" else "unreadable image"
        raise MediaError(f"{what}: {type(exc).__name__}: {exc}", kind) from None
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
        raise MediaError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                         _error_kind(exc)) from None
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
        raise MediaError(f"{type(exc).__name__}: {exc}", _error_kind(exc)) from None
    if frames <= 0 or width <= 0:
        raise MediaError("no video frames")
    return MediaInfo(int(width), int(height), int(frames), fps, "pyav")


def load_pixels(path: Path, info: MediaInfo, geometry: Geometry) -> torch.Tensor:
    """Frames ``0 .. geometry.frames-1`` of ``path``, resized and cropped: float (F, C, H, W) in [0, 1].

    Raises :class:`MediaError` when the file cannot deliver them (truncated, corrupt, unreadable),
    and :class:`MediaProcessingError` when frames decoded but could not be resized or cropped.
    """
    if info.reader == "pil":
        return _fit(_load_image(path), geometry, path)
    out = _output(geometry)
    if info.reader == "decord" and video_decoder() == "decord":
        try:
            return _fill(out, _decord_chunks(path, geometry), geometry, path)
        except MediaError:
            pass  # fall through to PyAV
    return _fill(out, _pyav_chunks(path, geometry), geometry, path)


def _fill(out: torch.Tensor, chunks: Iterator[Any], geometry: Geometry, path: Path) -> torch.Tensor:
    """Resize/crop each decoded chunk into ``out`` (decode errors come from ``chunks`` as MediaError)."""
    done = 0
    for frames in chunks:
        out[done : done + len(frames)] = _fit(frames, geometry, path)
        done += len(frames)
    return out


def _fit(frames_uint8: Any, geometry: Geometry, path: Path) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> resized, cropped (F, 3, h, w) float in [0, 1]."""
    import numpy as np
    import torch

    try:
        tensor = torch.from_numpy(np.require(frames_uint8, dtype=np.uint8, requirements="W")).permute(0, 3, 1, 2)
        tensor = tensor.float().div_(255.0)
        pre_w, pre_h = geometry.pre_size
        if tensor.shape[-2:] != (pre_h, pre_w):
            down = pre_h < tensor.shape[-2] or pre_w < tensor.shape[-1]
            tensor = torch.nn.functional.interpolate(tensor, size=(pre_h, pre_w), mode="bilinear",
                                                     align_corners=False, antialias=down)
        left, top, width, height = geometry.crop_box
        tensor = tensor[:, :, top : top + height, left : left + width].clamp_(0.0, 1.0)
        if tuple(tensor.shape[-2:]) != (geometry.size[1], geometry.size[0]):
            raise ValueError(f"the crop box {geometry.crop_box} does not fit the resized {pre_w}x{pre_h} frames")
    except Exception as exc:
        raise MediaProcessingError(
            f"{path}: the frames decoded, but resizing them to {geometry.pre_size[0]}x{geometry.pre_size[1]} and "
            f"cropping {geometry.size[0]}x{geometry.size[1]} failed ({type(exc).__name__}: {exc}); the file is not "
            "damaged: check the dataset's resolution and crop settings") from None
    return tensor


def _load_image(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except Exception as exc:
        kind = _error_kind(exc)
        raise MediaError(f"{'cannot read' if kind == 'io' else 'unreadable'} image: {type(exc).__name__}: {exc}",
                         kind) from None
    return array[None]


def _decord_chunks(path: Path, geometry: Geometry) -> Iterator[Any]:
    """Decoded (F, H, W, 3) uint8 chunks; every decoder failure becomes :class:`MediaError`."""
    try:
        import decord

        reader = decord.VideoReader(str(path), num_threads=1)
        if len(reader) < geometry.frames:
            raise MediaError(f"only {len(reader)} frames, {geometry.frames} needed")
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"decord: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                         _error_kind(exc)) from None
    if len(reader) < (geometry.frames - 1) * geometry.step + 1:
        raise MediaError(f"only {len(reader)} frames, {(geometry.frames - 1) * geometry.step + 1} needed")
    for start in range(0, geometry.frames, CHUNK):
        indices = [i * geometry.step for i in range(start, min(start + CHUNK, geometry.frames))]
        try:
            chunk = reader.get_batch(indices).asnumpy()
        except Exception as exc:
            raise MediaError(f"decord: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                             _error_kind(exc)) from None
        yield chunk


def _output(geometry: Geometry) -> torch.Tensor:
    import torch

    width, height = geometry.size
    return torch.empty(geometry.frames, 3, height, width)


def _pyav_chunks(path: Path, geometry: Geometry) -> Iterator[Any]:
    """Decoded (F, H, W, 3) uint8 chunks of the first ``geometry.frames`` frames, read with PyAV."""
    import numpy as np

    pending: list[Any] = []
    decoded = seen = 0
    try:
        import av

        container = av.open(str(path))
    except Exception as exc:
        raise MediaError(f"PyAV: {type(exc).__name__}: {exc}", _error_kind(exc)) from None
    with container:
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = container.decode(stream)
        except Exception as exc:
            raise MediaError(f"PyAV: {type(exc).__name__}: {exc}", _error_kind(exc)) from None
        while decoded < geometry.frames:
            try:
                frame = next(frames, None)
                if frame is None:
                    break
                seen += 1
                if (seen - 1) % geometry.step:  # video.frame_rate: every step-th frame
                    continue
                pending.append(frame.to_ndarray(format="rgb24"))
            except Exception as exc:
                raise MediaError(f"PyAV: {type(exc).__name__}: {exc}", _error_kind(exc)) from None
            decoded += 1
            if len(pending) == CHUNK or decoded == geometry.frames:
                yield np.stack(pending)
                pending = []
    if decoded < geometry.frames:
        raise MediaError(f"truncated: decoded {decoded} of the {geometry.frames} frames needed")


class NoAudio(MediaError):
    """The file has no audio stream (the clip trains without sound; not an unreadable file)."""


def probe_audio(path: Path) -> MediaInfo:
    """An audio file's length: ``frames`` is its sample count at ``fps`` = its sample rate (PyAV)."""
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)", kind="empty")
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
        kind = _error_kind(exc)
        what = "cannot read audio" if kind == "io" else "unreadable audio"
        raise MediaError(f"{what}: PyAV: {type(exc).__name__}: {exc}", kind) from None
    if rate <= 0 or seconds <= 0:
        raise MediaError("no audio samples")
    return MediaInfo(0, 0, int(seconds * rate), float(rate), "pyav-audio")


def load_audio(path: Path, frames: int, fps: float, sample_rate: int, channels: int, offset: float = 0.0,
               extract: tuple[int | None, int | None] = (None, None)) -> torch.Tensor:
    """The sound of video frames ``0 .. frames-1``: float (channels, round(frames / fps * sample_rate)) in [-1, 1].
    For an audio file, ``frames / fps`` is simply the seconds to read, starting ``offset`` seconds in.

    Decoded with PyAV and resampled to ``sample_rate`` with ``channels`` (1 mono, 2 stereo: a mono source is
    duplicated, a stereo one down-mixed for mono). ``extract`` = (rate, channels), where set, is what the
    sound is first extracted at (a dataset's ``audio.sample_rate`` / ``audio.channels``) before it is
    brought to ``sample_rate`` / ``channels``. The window starts at the first video frame's time (audio
    before it is skipped, a late audio start is padded with silence), so sound and the frames used line up.
    A stream that ends up to a tenth short is padded with silence (encoder padding); shorter ones raise
    :class:`MediaError`, a file without an audio stream :class:`NoAudio`.
    """
    import numpy as np
    import torch

    if fps <= 0:
        raise MediaError("the video has no frame rate, so its sound cannot be aligned to the frames")
    wanted = max(1, round(frames / fps * sample_rate))
    layouts = {1: "mono", 2: "stereo"}
    extract_rate, extract_channels = extract[0] or sample_rate, extract[1] or channels
    if channels not in layouts or extract_channels not in layouts:
        raise MediaError(f"audio with {channels if channels not in layouts else extract_channels} channels is not "
                         "supported (1 or 2)")
    chunks: list[Any] = []

    def convert(frame: Any) -> list[Any]:
        outs = list(first.resample(frame))
        if second is None:
            return outs
        result = [out for each in outs for out in second.resample(each)]
        return result + list(second.resample(None)) if frame is None else result

    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise NoAudio("no audio stream")
            stream = container.streams.audio[0]
            video_start = _start_seconds(container.streams.video[0]) if container.streams.video else 0.0
            skip = round((video_start + offset - _start_seconds(stream)) * sample_rate)  # > 0: audio starts earlier
            first = av.AudioResampler(format="fltp", layout=layouts[extract_channels], rate=extract_rate)
            second = None if (extract_rate, extract_channels) == (sample_rate, channels) else \
                av.AudioResampler(format="fltp", layout=layouts[channels], rate=sample_rate)
            have = -skip
            for frame in container.decode(stream):
                for out in convert(frame):
                    chunks.append(out.to_ndarray().reshape(channels, -1))
                    have += chunks[-1].shape[1]
                if have >= wanted:
                    break
            else:
                for out in convert(None):
                    chunks.append(out.to_ndarray().reshape(channels, -1))
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"PyAV audio: {type(exc).__name__}: {exc}", _error_kind(exc)) from None
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
