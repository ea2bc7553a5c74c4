"""What the known plugin distributions provide, so a key or family from a plugin that is not
installed gets "install vtrain-xyz" instead of "unknown key".

This is data only. A test checks that every installed bundled plugin declares exactly the
keys listed for it here, so the table cannot drift from the plugins.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownDistribution:
    """A plugin distribution and what it adds."""

    distribution: str
    families: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    key_prefixes: tuple[str, ...] = ()
    optimizers: tuple[str, ...] = ()


KNOWN_DISTRIBUTIONS: tuple[KnownDistribution, ...] = (
    KnownDistribution(
        "vtrain-ltxvideo",
        families=("ltxvideo",),
        keys=(
            "pretrained_vae_model_name_or_path",
            "pretrained_transformer_model_name_or_path",
            "pretrained_transformer_subfolder",
            "tokenizer_max_length",
            "lora_target",
            "i2v_conditioning_probability",
            "validation_image",
        ),
    ),
    KnownDistribution(
        "vtrain-quant",
        keys=(
            "base_model_precision",
            "text_encoder_1_precision",
            "text_encoder_2_precision",
            "quantize_via",
        ),
        optimizers=("bnb-adamw8bit", "bnb-lion8bit", "bnb-lion8bit-paged", "bnb-adamw8bit-paged"),
    ),
    KnownDistribution(
        "vtrain-offload",
        keys=(
            "enable_group_offload",
            "group_offload_type",
            "group_offload_blocks_per_group",
            "group_offload_use_stream",
            "group_offload_to_disk_path",
            "enable_model_cpu_offload",
            "attention_mechanism",
            "torch_compile",
            "torch_compile_mode",
        ),
    ),
    KnownDistribution("vtrain-crepa", key_prefixes=("crepa_",)),
    KnownDistribution("vtrain-ltx2", families=("ltx2",), key_prefixes=("ltx2_",)),
    KnownDistribution("vtrain-rollout", key_prefixes=("scheduled_sampling_",)),
)


def distribution_for_key(key: str) -> str | None:
    """The distribution that declares ``key``, if a known one does."""
    for dist in KNOWN_DISTRIBUTIONS:
        if key in dist.keys or any(key.startswith(prefix) for prefix in dist.key_prefixes):
            return dist.distribution
    return None


def distribution_for_family(family: str) -> str | None:
    for dist in KNOWN_DISTRIBUTIONS:
        if family in dist.families:
            return dist.distribution
    return None


def distribution_for_optimizer(name: str) -> str | None:
    for dist in KNOWN_DISTRIBUTIONS:
        if name in dist.optimizers:
            return dist.distribution
    return None


def is_installed(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True
