"""Audio-conditioned validation (SimpleTuner's S2V validation with ``validation_using_datasets``).

diffusers' LTX-2 pipelines generate both modalities; to condition the video on a clip's sound, the
transformer is fed that sound's cached latents clean with audio timestep (and sigma) 0 at every
step, exactly as training feeds a frozen audio stream, and the output's audio track is decoded from
those latents. Both changes last only for one pipeline call (a forward pre-hook on the transformer
and a wrapper of the audio VAE's ``decode``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def fit_tokens(clean: Any, length: int) -> Any:
    """``clean`` (tokens, dim) cut or looped to ``length`` tokens (the pipeline's audio length for its frames)."""
    import torch

    repeats = -(-length // clean.shape[0])
    return torch.cat([clean] * repeats)[:length] if repeats > 1 else clean[:length]


@contextlib.contextmanager
def audio_conditioned(pipeline: Any, clean: Any) -> Iterator[None]:
    """Within the block, ``pipeline`` generates video conditioned on ``clean`` (normalised, packed audio latents
    ``(tokens, dim)`` as ``encode_batch`` caches them) and returns that sound as its audio."""
    import torch

    transformer, audio_vae = pipeline.transformer, pipeline.audio_vae

    def feed_clean(_module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
        hidden = kwargs.get("audio_hidden_states")
        if hidden is None:
            return None
        batch = hidden.shape[0]
        zero = torch.zeros(batch, device=hidden.device, dtype=torch.float32)
        kwargs = {**kwargs, "audio_hidden_states": fit_tokens(clean, hidden.shape[1]).to(hidden)[None].expand(batch, -1, -1),
                  "audio_timestep": zero, "audio_sigma": zero}
        return args, kwargs

    decode = audio_vae.decode

    def decode_clean(latents: Any, *args: Any, **kwargs: Any) -> Any:
        length, bins = latents.shape[2], latents.shape[3]
        packed = fit_tokens(clean, length)[None].to(latents.device, torch.float32)
        sound = pipeline._denormalize_audio_latents(packed, audio_vae.latents_mean.to(latents.device),
                                                    audio_vae.latents_std.to(latents.device))
        sound = pipeline._unpack_audio_latents(sound, length, num_mel_bins=bins)
        return decode(sound.to(latents.dtype).expand(latents.shape[0], -1, -1, -1), *args, **kwargs)

    handle = transformer.register_forward_pre_hook(feed_clean, with_kwargs=True)
    audio_vae.decode = decode_clean
    try:
        yield
    finally:
        handle.remove()
        del audio_vae.decode  # the class's own method again
