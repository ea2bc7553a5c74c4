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
            "ltx_train_mode",
            "ltx_protect_first_frame",
            "ltx_partial_noise_fraction",
            "ltx_temporal_positions",
            "validation_decode_timestep",
            "validation_decode_noise_scale",
            "vae_latent_sampling",
            "vae_enable_slicing",
            "vae_enable_tiling",
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
        optimizers=("bnb-adagrad", "bnb-adagrad8bit", "bnb-adam", "bnb-adam8bit", "bnb-adamw", "bnb-adamw8bit",
                    "bnb-adamw-paged", "bnb-adamw8bit-paged", "bnb-lion", "bnb-lion8bit", "bnb-lion-paged",
                    "bnb-lion8bit-paged", "bnb-ademamix", "bnb-ademamix8bit", "bnb-ademamix-paged",
                    "bnb-ademamix8bit-paged", "ao-adamw8bit", "ao-adamw4bit", "ao-adamfp8", "ao-adamwfp8"),
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
    KnownDistribution("vtrain-tread", keys=("tread_config",)),
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
