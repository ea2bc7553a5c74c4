"""On-disk cache of CREPA's encoder targets, one safetensors file per training sample.

A sample's targets depend only on its clean frames (named by the data layer's content-keyed
``sample_key``), the encoder, its input size, the frame pooling and the token layout, so after the
first epoch CREPA skips both the VAE decode and the encoder. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CODE_VERSION = 1  # bump when the way targets are computed changes


class FeatureCache:
    """``get(keys)`` -> stacked targets or None; ``put(keys, targets)`` stores each sample's slice."""

    def __init__(self, folder: str | Path, identity: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.identity = dict(identity, code=CODE_VERSION)
        self.hits = 0
        self.misses = 0

    def _path(self, sample_key: str, layout: tuple[int, ...]) -> Path:
        text = json.dumps({"sample": sample_key, "layout": list(layout), **self.identity}, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def get(self, sample_keys: list[str], layout: tuple[int, ...]) -> torch.Tensor | None:
        import torch
        from safetensors.torch import load_file

        paths = [self._path(key, layout) for key in sample_keys]
        if not all(path.is_file() for path in paths):
            self.misses += 1
            return None
        self.hits += 1
        return torch.stack([load_file(str(path))["targets"] for path in paths])

    def put(self, sample_keys: list[str], layout: tuple[int, ...], targets: torch.Tensor) -> None:
        from safetensors.torch import save

        from vtrain.atomic import atomic_write_bytes

        for key, target in zip(sample_keys, targets):
            atomic_write_bytes(self._path(key, layout), save({"targets": target.detach().cpu().contiguous()}))
