"""vtrain-quant: quantised base models and 8-bit optimizers, through the ``quantize_model`` phase.

This slice declares the options so SimpleTuner configs are recognised. ``no_change`` works
(it is the absence of quantisation); every other precision is refused as "not supported yet"
until the quantisation issue lands.
"""

from __future__ import annotations

from typing import Any

from vtrain.hookspecs import hookimpl

PRECISIONS = ("no_change", "int8-quanto", "int4-quanto", "fp8-quanto", "int8-torchao", "fp8-torchao", "nf4-bnb")
_PLANNED = {"status": "planned", "planned_note": "quantised training is not built yet (only no_change works)",
            "category": "quantisation"}


@hookimpl
def add_options(registry: Any) -> None:
    registry.add("base_model_precision", "str", "no_change", "Quantise the frozen base model's weights.",
                 choices=PRECISIONS, **_PLANNED)
    registry.add("text_encoder_1_precision", "str", "no_change", "Quantise the first text encoder.",
                 choices=PRECISIONS, **_PLANNED)
    registry.add("text_encoder_2_precision", "str", "no_change", "Quantise the second text encoder.",
                 choices=PRECISIONS, **_PLANNED)
    registry.add("quantize_via", "str", "accelerator", "Where quantisation runs: cpu or accelerator.",
                 choices=("cpu", "accelerator"), **_PLANNED)
