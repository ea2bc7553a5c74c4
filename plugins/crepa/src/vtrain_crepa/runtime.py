"""One run's CREPA state: the family's capabilities, the frozen encoder, the projection head, the schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vtrain_crepa.frames import frame_groups, pooling_plan, resize_patch_grid, token_grid
from vtrain_crepa.loss import CrepaLoss, crepa_loss
from vtrain_crepa.schedule import WeightSchedule

if TYPE_CHECKING:
    import torch

    from vtrain.family import ModelBundle
    from vtrain_crepa.encoder import FrameEncoder

META_KEY = "crepa"  # bundle.meta[META_KEY] holds the CrepaRuntime
HEAD_KEY = "crepa_head"  # bundle.extra_trainables[HEAD_KEY]: optimised, checkpointed, saved as crepa_head.safetensors


def build_head(in_width: int, out_width: int) -> torch.nn.Module:
    """The trainable projection: LayerNorm then Linear from the block width to the encoder width."""
    import torch

    return torch.nn.Sequential(torch.nn.LayerNorm(in_width), torch.nn.Linear(in_width, out_width))


@dataclass
class CrepaRuntime:
    """Built by the plugin's ``load_model`` wrapper; the encoder and head are added after the adapters."""

    family: Any
    block_index: int
    distance: int
    tau: float
    pooling: str
    schedule: WeightSchedule
    encoder: FrameEncoder | None = None
    feature_cache: Any = None  # a FeatureCache when crepa_feature_cache_dir is set

    def clean_frames(self, bundle: ModelBundle, batch: dict[str, Any]) -> torch.Tensor:
        """(B, F, 3, H, W) in [0, 1]: the batch's pixels when it has them, else the decoded clean latents."""
        import torch

        pixels = batch.get("pixels")
        if isinstance(pixels, torch.Tensor) and pixels.dim() == 5:
            return pixels.float()
        if "latents" not in batch:
            raise ValueError(f"CREPA needs the batch's clean 'latents' (or 'pixels'); it has {sorted(batch)}")
        with torch.no_grad():
            return self.family.decode_latents(bundle, batch["latents"])

    def targets(self, bundle: ModelBundle, batch: dict[str, Any], frames: int, tokens: int,
                grid: tuple[int, int, int] | None) -> torch.Tensor:
        """(B, frames, tokens, encoder width) encoder features matched to the captured token layout."""
        assert self.encoder is not None

        if grid is not None:
            rows, cols = int(grid[1]), int(grid[2])
        else:
            latents = batch["latents"]
            rows, cols = token_grid(tokens, int(latents.shape[-2]), int(latents.shape[-1]))
        keys = batch.get("sample_key")
        cache = self.feature_cache if isinstance(keys, list) and keys else None
        if cache is not None:
            cached = cache.get(keys, (frames, rows, cols))
            if cached is not None:
                return cached.to(batch["latents"].device if "latents" in batch else cached.device)
        result = self._compute_targets(bundle, batch, frames, rows, cols)
        if cache is not None:
            cache.put(keys, (frames, rows, cols), result)
        return result

    def _compute_targets(self, bundle: ModelBundle, batch: dict[str, Any], frames: int, rows: int,
                         cols: int) -> torch.Tensor:
        assert self.encoder is not None
        import torch

        pixels = self.clean_frames(bundle, batch)
        size = pixels.shape[0]
        traits = self.family.traits
        groups = frame_groups(pixels.shape[1], frames, traits.frame_factor, traits.frame_offset)
        encoded, pool = pooling_plan(groups, self.pooling)
        chosen = pixels[:, encoded].flatten(0, 1)  # (B * n, 3, H, W)
        features = self.encoder.patch_features(chosen)  # (B * n, g, g, D)
        features = resize_patch_grid(features, rows, cols).reshape(size, len(encoded), rows * cols, -1)
        return torch.einsum("fn,bntd->bftd", pool.to(features.device), features)

    def term(self, bundle: ModelBundle, batch: dict[str, Any], hidden: torch.Tensor,
             grid: tuple[int, int, int] | None) -> CrepaLoss:
        """The unweighted CREPA loss of captured ``hidden`` (B, F, T, width) against the clean frames."""
        head = bundle.extra_trainables[HEAD_KEY]
        dtype = next(head.parameters()).dtype
        projected = head(hidden.to(dtype))
        target = self.targets(bundle, batch, hidden.shape[1], hidden.shape[2], grid)
        return crepa_loss(projected, target.to(projected.device), self.distance, self.tau)
