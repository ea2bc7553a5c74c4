"""Validation previews: intermediate decodes of a render while it is being sampled.

A family that can preview (see :class:`vtrain.family.PreviewDecoder`) calls
:func:`denoising_step` after every sampling step of a validation render; that is a no-op unless
an observer is installed (the webhook service installs one when ``validation_preview`` is on).
``preview_decoder(bundle, config)`` returns a callable from the family's latents ``(B, C, F, H, W)``
to pixels ``(B, F, 3, H', W')`` in [0, 1], typically a tiny autoencoder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_OBSERVER = "vtrain.preview_observer"


def denoising_step(bundle: Any, nickname: str, index: int, total: int, latents: Any) -> None:
    """Report sampling step ``index`` (0-based) of ``total`` for the render named ``nickname``."""
    observer = bundle.meta.get(_OBSERVER)
    if observer is not None:
        observer(nickname, index, total, latents)


def is_observed(bundle: Any) -> bool:
    """Whether previews are wanted now (lets a family skip the per-step work otherwise)."""
    return bundle.meta.get(_OBSERVER) is not None


@contextlib.contextmanager
def observing(bundle: Any, observer: Callable[[str, int, int, Any], None]) -> Iterator[None]:
    """Install ``observer`` on ``bundle`` for the duration of the block."""
    bundle.meta[_OBSERVER] = observer
    try:
        yield
    finally:
        bundle.meta.pop(_OBSERVER, None)


def write_preview(decoder: Callable[[Any], Any], latents: Any, stem: Path) -> Path:
    """Decode the first sample of ``latents`` and write it as ``stem.png`` (one frame) or ``stem.gif``."""
    import torch

    from vtrain.services.media import gif_bytes, to_uint8_frames

    with torch.no_grad():
        pixels = decoder(latents[:1])
    frames = to_uint8_frames(pixels[0])
    stem.parent.mkdir(parents=True, exist_ok=True)
    if len(frames) == 1:
        from PIL import Image

        path = stem.with_suffix(".png")
        Image.fromarray(frames[0]).save(path)
    else:
        path = stem.with_suffix(".gif")
        path.write_bytes(gif_bytes(frames))
    return path
