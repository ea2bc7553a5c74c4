"""vtrain-ltxvideo: the LTX-Video model family (filled in by the LTX-Video issue)."""

from __future__ import annotations

from typing import Any

from vtrain.hookspecs import hookimpl

_PLANNED = {"status": "planned", "planned_note": "the LTX-Video family is not built yet", "category": "ltxvideo",
            "families": ("ltxvideo",)}


@hookimpl
def add_options(registry: Any) -> None:
    registry.add("pretrained_vae_model_name_or_path", "str", None, "Hub id or folder of the VAE.", **_PLANNED)
    registry.add("pretrained_transformer_model_name_or_path", "str", None, "Hub id or folder of the transformer.",
                 **_PLANNED)
    registry.add("pretrained_transformer_subfolder", "str", "transformer",
                 "Subfolder of the transformer weights; none = at the root.", **_PLANNED)
