"""SimpleTuner's VAE memory switches, applied to whatever a diffusers autoencoder offers.

``vae_enable_slicing`` (one sample at a time), ``vae_enable_tiling`` (overlapping spatial tiles) and
``vae_enable_patch_conv`` / ``vae_enable_temporal_roll`` (SimpleTuner's temporal chunking of the LTX-2 VAE's
causal convolutions). diffusers' video autoencoders have no chunked convolution; the nearest thing they
offer is framewise (temporal tiled) encoding and decoding, which bounds memory by a fixed number of frames
the same way, so both temporal keys switch it on (SimpleTuner also maps both keys to one switch). A switch
the autoencoder's class does not offer is reported as a note, never skipped silently.

Families call :func:`apply_vae_memory` on each autoencoder they load; it knows no family, only the
attributes diffusers' autoencoders expose.
"""

from __future__ import annotations

from typing import Any

SWITCHES = ("vae_enable_slicing", "vae_enable_tiling", "vae_enable_patch_conv", "vae_enable_temporal_roll")
TEMPORAL = ("vae_enable_patch_conv", "vae_enable_temporal_roll")


def declare_options(registry: Any) -> None:
    """The four keys (SimpleTuner's names and defaults), for every family that loads a diffusers autoencoder."""
    memory = {"category": "memory"}
    registry.add("vae_enable_slicing", "bool", False,
                 "Encode/decode one sample of a batch at a time in the VAE (diffusers' enable_slicing): less memory.",
                 **memory)
    registry.add("vae_enable_tiling", "bool", False,
                 "Encode/decode in overlapping spatial tiles (diffusers' enable_tiling): much less memory for large "
                 "frames; tile seams may differ slightly from a full decode.", **memory)
    registry.add("vae_enable_patch_conv", "bool", False,
                 "SimpleTuner's temporal chunking of the LTX-2 VAE. diffusers has no chunked convolution; vtrain "
                 "switches on the nearest it offers, framewise (temporal tiled) encoding/decoding of clips longer "
                 "than the VAE's temporal tile (16 frames), which bounds memory the same way.", **memory)
    registry.add("vae_enable_temporal_roll", "bool", False,
                 "SimpleTuner's more aggressive temporal chunking; SimpleTuner maps it to the same switch as "
                 "vae_enable_patch_conv, and so does vtrain (framewise encoding/decoding).", **memory)


def apply_vae_memory(vae: Any, config: Any, name: str = "VAE") -> list[str]:
    """Switch on what ``config`` asks for on ``vae``; return one note per switch its class does not offer."""
    notes: list[str] = []
    cls = type(vae).__name__

    def lacks(key: str, what: str) -> None:
        notes.append(f"{key}: the {name} ({cls}) offers no {what}, so it is left off")

    if config.get("vae_enable_slicing"):
        vae.enable_slicing() if hasattr(vae, "use_slicing") else lacks("vae_enable_slicing", "slicing")
    if config.get("vae_enable_tiling"):
        vae.enable_tiling() if hasattr(vae, "use_tiling") else lacks("vae_enable_tiling", "spatial tiling")
    temporal = [key for key in TEMPORAL if config.get(key)]
    if temporal:
        if hasattr(vae, "use_framewise_encoding") and hasattr(vae, "use_framewise_decoding"):
            vae.use_framewise_encoding = True
            vae.use_framewise_decoding = True  # diffusers' LTX encoders check this flag for temporal tiling too
        else:
            for key in temporal:
                lacks(key, "temporal (framewise) tiling")
    return notes


def note_once(config: Any, notes: list[str]) -> None:
    """Add ``notes`` to the run's notices (shown in the start-up summary), each once."""
    notices = getattr(config, "notices", None)
    if notices is None:
        return
    for note in notes:
        if note not in notices:
            notices.append(note)
