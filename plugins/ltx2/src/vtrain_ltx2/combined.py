"""LTX-2's combined single-file checkpoint: transformer, video VAE and audio VAE in one ``.safetensors`` file.

Lightricks publishes LTX-2 as one file per variant (``ltx-2-19b-dev.safetensors``, ``...-dev-fp8``, ...), in
ltx-core naming: ``model.diffusion_model.`` (transformer), ``vae.`` (video VAE), ``audio_vae.`` (audio VAE),
``vocoder.``. diffusers' ``from_single_file`` converts each part from it (it picks its own prefix); the
architecture comes from a diffusers config source. :func:`write_combined_checkpoint` writes such a file from
a diffusers folder (the tiny test model), so the loading path is tested with the published key names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

TRANSFORMER_PREFIX = "model.diffusion_model."
VIDEO_VAE_PREFIX = "vae."
AUDIO_VAE_PREFIX = "audio_vae."

# diffusers -> ltx-core names of the video VAE's blocks (the inverse of diffusers' single-file converter):
# the original numbers every stage and every down/up-sampler as one block.
_VIDEO_VAE_BLOCKS = (
    ("encoder.down_blocks.0.downsamplers.0", "encoder.down_blocks.1"),
    ("encoder.down_blocks.1.downsamplers.0", "encoder.down_blocks.3"),
    ("encoder.down_blocks.2.downsamplers.0", "encoder.down_blocks.5"),
    ("encoder.down_blocks.3.downsamplers.0", "encoder.down_blocks.7"),
    ("encoder.down_blocks.0", "encoder.down_blocks.0"),
    ("encoder.down_blocks.1", "encoder.down_blocks.2"),
    ("encoder.down_blocks.2", "encoder.down_blocks.4"),
    ("encoder.down_blocks.3", "encoder.down_blocks.6"),
    ("encoder.mid_block", "encoder.down_blocks.8"),
    ("decoder.mid_block", "decoder.up_blocks.0"),
    ("decoder.up_blocks.0.upsamplers.0", "decoder.up_blocks.1"),
    ("decoder.up_blocks.1.upsamplers.0", "decoder.up_blocks.3"),
    ("decoder.up_blocks.2.upsamplers.0", "decoder.up_blocks.5"),
    ("decoder.up_blocks.0", "decoder.up_blocks.2"),
    ("decoder.up_blocks.1", "decoder.up_blocks.4"),
    ("decoder.up_blocks.2", "decoder.up_blocks.6"),
)
_STATISTICS = (("latents_mean", "per_channel_statistics.mean-of-means"),
               ("latents_std", "per_channel_statistics.std-of-means"))


def original_transformer_key(name: str) -> str:
    """A diffusers LTX-2 transformer key in the combined file's naming."""
    from vtrain_ltx2.saving import to_original_name

    name = to_original_name(name).replace("norm_q", "q_norm").replace("norm_k", "k_norm")
    name = name.replace("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video")
    return TRANSFORMER_PREFIX + name.replace("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio")


def original_video_vae_key(name: str) -> str:
    """A diffusers LTX-2 video VAE key in the combined file's naming."""
    for diffusers_name, original in _VIDEO_VAE_BLOCKS:
        if name.startswith(diffusers_name + "."):
            name = original + name[len(diffusers_name):]
            break
    for diffusers_name, original in _STATISTICS:
        if name == diffusers_name:
            name = original
    return VIDEO_VAE_PREFIX + name.replace(".resnets.", ".res_blocks.")


def original_audio_vae_key(name: str) -> str:
    """A diffusers LTX-2 audio VAE key in the combined file's naming."""
    return AUDIO_VAE_PREFIX + dict(_STATISTICS).get(name, name)


def write_combined_checkpoint(model_dir: str | Path, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write the transformer, video VAE and audio VAE of the diffusers folder ``model_dir`` as one combined
    checkpoint in ltx-core naming (weights cast to ``dtype`` when given, as the fp8 variant stores them)."""
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    state: dict[str, Any] = {}
    for cls, sub, rename in ((LTX2VideoTransformer3DModel, "transformer", original_transformer_key),
                             (AutoencoderKLLTX2Video, "vae", original_video_vae_key),
                             (AutoencoderKLLTX2Audio, "audio_vae", original_audio_vae_key)):
        part = cls.from_pretrained(model_dir / sub)
        for name, value in part.state_dict().items():
            if dtype is not None and sub == "transformer" and value.is_floating_point() and value.dim() == 2:
                value = value.to(dtype)
            state[rename(name)] = value.detach().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


_PARTS = {"transformer": (TRANSFORMER_PREFIX, "convert_ltx2_transformer_to_diffusers"),
          "vae": (VIDEO_VAE_PREFIX, "convert_ltx2_vae_to_diffusers"),
          "audio_vae": (AUDIO_VAE_PREFIX, "convert_ltx2_audio_vae_to_diffusers")}


def load_part(cls: Any, checkpoint: str, base: str, subfolder: str, dtype: torch.dtype | None) -> Any:
    """The part ``subfolder`` (transformer, vae, audio_vae) of a combined (or single-part) checkpoint in ltx-core
    naming: its tensors renamed by diffusers' own single-file converters, the architecture from ``base``.

    Only the part's tensors are read (safetensors maps the file). A tensor the architecture does not have, or
    one it lacks, is an error naming it (a variant with extra scale tensors cannot be loaded by a plain cast).
    """
    import torch
    from accelerate import init_empty_weights
    from diffusers.loaders import single_file_utils
    from safetensors import safe_open

    from vtrain_ltx2.loading import _subfolder

    prefix, converter = _PARTS[subfolder]
    with safe_open(checkpoint, framework="pt", device="cpu") as handle:
        keys = list(handle.keys())
        own = [k for k in keys if k.startswith(prefix)]
        if not own:  # a file of this part alone, without the combined file's prefix
            own, prefix = keys, ""
        state = {(k if prefix else _PARTS[subfolder][0] + k): handle.get_tensor(k) for k in own}
    state = getattr(single_file_utils, converter)(state)
    settings = cls.load_config(base, subfolder=_subfolder(base, subfolder))
    with init_empty_weights():
        model = cls.from_config(settings)
    expected = set(model.state_dict())
    if subfolder == "transformer":
        state = _rename_newer_modules(state, expected)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{checkpoint} does not match the {subfolder} of {base}: "
                         f"{len(missing)} tensors missing (e.g. {missing[:3]}), "
                         f"{len(unexpected)} not in the architecture (e.g. {unexpected[:3]})")
    target = dtype or torch.float32
    model.load_state_dict({k: v.to(target) if v.is_floating_point() else v for k, v in state.items()}, assign=True)
    return torch.nn.Module.to(model, target).eval()  # ModelMixin.to warns about fp32 modules it has none of


def _rename_newer_modules(state: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """Keys diffusers' converter leaves in ltx-core naming (its table predates LTX-2.3's prompt modulation,
    ``prompt_adaln_single`` / ``audio_prompt_adaln_single``): renamed with vtrain's own name table when the
    diffusers name is one the architecture has."""
    from vtrain_ltx2.saving import ORIGINAL_PREFIXES

    renamed: dict[str, Any] = {}
    for key, value in state.items():
        if key not in expected:
            for diffusers_name, original in ORIGINAL_PREFIXES:
                if key.startswith(original + "."):
                    candidate = diffusers_name + key[len(original):]
                    if candidate in expected:
                        key = candidate
                        break
        renamed[key] = value
    return renamed
