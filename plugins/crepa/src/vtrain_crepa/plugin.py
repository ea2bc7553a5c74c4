"""vtrain-crepa: cross-frame representation alignment (arXiv 2506.09229).

This slice declares the options SimpleTuner users write, so their configs are recognised;
the regulariser itself lands with the CREPA issue, and until then any non-default value is
refused with a clear "not supported yet" instead of being ignored.
"""

from __future__ import annotations

from typing import Any

from vtrain.hookspecs import hookimpl

_PLANNED = {"status": "planned", "planned_note": "the CREPA regulariser is not built yet", "category": "crepa"}


@hookimpl
def add_options(registry: Any) -> None:
    registry.add("crepa_enabled", "bool", False, "Add the CREPA cross-frame alignment loss.", **_PLANNED)
    registry.add("crepa_block_index", "int", 8, "Transformer block whose hidden states are aligned.", **_PLANNED)
    registry.add("crepa_lambda", "float", 0.5, "Weight of the CREPA term.", **_PLANNED)
    registry.add("crepa_adjacent_distance", "int", 1, "Neighbouring frames on each side that are aligned too.", **_PLANNED)
    registry.add("crepa_adjacent_tau", "float", 1.0, "Temporal decay of the neighbour weights, exp(-k/tau).", **_PLANNED)
    registry.add("crepa_encoder", "str", "dinov2_vitg14", "Frozen vision encoder (dinov2_vitg14 or dinov2_vits14).",
                 **_PLANNED)
    registry.add("crepa_encoder_image_size", "int", 518, "Input size of the vision encoder.", **_PLANNED)
    registry.add("crepa_drop_vae_encoder", "bool", False, "Free the VAE encoder when training only from cached latents.",
                 **_PLANNED)
