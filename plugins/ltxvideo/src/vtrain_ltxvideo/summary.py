"""The LTX-Video lines of the start-up summary."""

from __future__ import annotations

from typing import Any

from vtrain_ltxvideo.loss import i2v_probability


def i2v_share(dataset: Any, probability: float) -> tuple[float, int, int]:
    """(expected share of samples that train as image-to-video, i2v-dataset samples, all samples).

    A sample is eligible when its dataset is an i2v dataset (``video.is_i2v``, or the family default);
    each eligible sample conditions its first frame with ``probability``. Single-frame samples
    (images) never do, which the expected share leaves in (their count is not known before encoding).
    """
    flags = []
    for part in getattr(dataset, "parts", []):
        flags.extend(bool(sample.is_i2v) for sample in part.samples)
    if not flags and hasattr(dataset, "__len__"):
        flags = [bool(dataset[i].get("is_i2v", True)) for i in range(len(dataset))]
    eligible = sum(flags)
    total = max(len(flags), 1)
    return probability * eligible / total, eligible, len(flags)


def describe(run: Any) -> list[str]:
    config, bundle = run.config, run.bundle
    probability = i2v_probability(config)
    share, eligible, total = i2v_share(run.dataset, probability)
    lines = [f"image-to-video: about {100 * share:.0f}% of samples train as i2v ({eligible} of {total} samples are "
             f"from i2v datasets, each conditioned with probability {probability:g}); the realised share is "
             "logged per update as i2v_fraction"]
    positions = bundle.meta.get("temporal_positions", "scaled")
    why = "read from the checkpoint" if config.ltx_temporal_positions == "auto" else "ltx_temporal_positions"
    lines.append(f"temporal positions: {positions} ({why})")
    lines.append(f"latents: {config.vae_latent_sampling} of the VAE posterior"
                 + (" (a fresh draw each time a sample is used)" if config.vae_latent_sampling == "sample" else ""))
    return lines
