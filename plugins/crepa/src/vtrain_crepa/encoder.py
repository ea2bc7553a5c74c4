"""The frozen vision encoder (DINOv2 through transformers) and its patch features of pixel frames."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch.hub names SimpleTuner users write -> the same weights on the Hugging Face hub
ALIASES = {
    "dinov2_vits14": "facebook/dinov2-small",
    "dinov2_vitb14": "facebook/dinov2-base",
    "dinov2_vitl14": "facebook/dinov2-large",
    "dinov2_vitg14": "facebook/dinov2-giant",
}
ALIAS_PATCH_SIZE = 14
SMALL_IMAGE_SIZE = 224  # the default input size for dinov2_vits14 (the light choice)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FRAMES_PER_PASS = 32  # frames encoded at once, to bound the encoder's activation memory


def encoder_source(name: str) -> str:
    """The folder or hub id to load for ``crepa_encoder`` (an alias, a local folder or ``org/name``)."""
    return ALIASES.get(name, name)


def is_valid_encoder_name(name: str) -> bool:
    """An alias, an existing folder, or something shaped like a hub id (``org/name``)."""
    if name in ALIASES or Path(name).is_dir():
        return True
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def image_size_for(config: Any) -> int:
    """``crepa_encoder_image_size``, or 224 for ``dinov2_vits14`` when the size was not set."""
    if config.crepa_encoder == "dinov2_vits14" and not config.explicitly_set("crepa_encoder_image_size"):
        return SMALL_IMAGE_SIZE
    return int(config.crepa_encoder_image_size)


class FrameEncoder:
    """A frozen DINOv2 that turns pixel frames into patch features.

    :param model: a ``transformers.Dinov2Model`` (or any model whose ``last_hidden_state`` ends with
        the patch tokens in row-major order and whose config has ``hidden_size`` and ``patch_size``).
    :param image_size: frames are resized to ``image_size x image_size`` (a multiple of the patch size).
    """

    def __init__(self, model: Any, image_size: int) -> None:
        patch = int(model.config.patch_size)
        if image_size % patch:
            raise ValueError(f"crepa_encoder_image_size {image_size} is not a multiple of the encoder's patch "
                             f"size {patch}; use e.g. {image_size // patch * patch or patch}")
        self.model = model
        self.image_size = image_size
        self.grid = image_size // patch

    @classmethod
    def load(cls, name: str, image_size: int, device: Any, dtype: Any) -> FrameEncoder:
        from transformers import Dinov2Model

        from vtrain.errors import ConfigError, Problem

        source = encoder_source(name)
        try:
            model = Dinov2Model.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ConfigError([Problem("crepa_encoder", f"could not load the CREPA encoder {name!r} ({source}): {exc}",
                                       "download it once with network access (it is cached), or set crepa_encoder "
                                       "to a local folder holding a transformers Dinov2Model")]) from exc
        model.requires_grad_(False)
        model.eval()
        model.to(device)
        return cls(model, image_size)

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)

    def patch_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames in [0, 1] -> (N, grid, grid, width) float32 patch features (no gradient)."""
        import torch

        param = next(self.model.parameters())
        mean = torch.tensor(IMAGENET_MEAN, device=param.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=param.device).view(1, 3, 1, 1)
        outputs = []
        with torch.no_grad():
            for chunk in frames.split(FRAMES_PER_PASS):
                x = chunk.to(param.device, torch.float32)
                x = torch.nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                                    align_corners=False, antialias=True)
                x = ((x - mean) / std).to(param.dtype)
                hidden = self.model(pixel_values=x).last_hidden_state
                patches = hidden[:, -self.grid * self.grid:].float()
                outputs.append(patches.reshape(x.shape[0], self.grid, self.grid, -1))
        return torch.cat(outputs)
