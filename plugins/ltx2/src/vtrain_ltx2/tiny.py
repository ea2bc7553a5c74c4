"""Random-initialised LTX-2 pipeline folders built from the real diffusers classes.

``tiny`` (a few hundred kB) keeps every real compression: the video VAE 32x spatial / 8x temporal, the
audio VAE 4x in time and mel, a vocoder at 100 mel frames per second, so it trains and generates
through exactly the code that reads a published LTX-2 folder. ``--variant 2.3`` adds what LTX-2.3/2.5
changed (gated attention, prompt modulation, per-modality connector projections, split RoPE, the
bandwidth-extension vocoder). ``full`` writes the published 19B architecture as config files only
(no weights): :func:`build_full` materialises it with random weights on a GPU for benchmarks.

Dimension rules the tiny configs obey (each is checked by diffusers code at run time):
``caption_channels`` = Gemma hidden size; ``text_proj_in_factor`` = Gemma layers + 1; the audio VAE's
``latent_channels * mel_bins / 4 == base_channels`` (its statistics apply to packed tokens); the
vocoder's upsampling product is sample rate / 100; ``max_sequence_length`` is a multiple of the
connectors' learnable registers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VARIANTS = ("2.0", "2.3")
SIZES = ("tiny", "full")

_SENTENCES = (
    "a red square moves from left to right with a rising tone", "a blue circle slides from top to bottom",
    "a green ball bounces across the frame with a chirp", "a yellow box rolls slowly over a dark background",
    "a white triangle spins fast on a grey background and hums", "loud music and people cheering",
)
GEMMA_TEXT = dict(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=256,
                  sliding_window=64, pad_token_id=0, eos_token_id=1, bos_token_id=2)
GEMMA_VISION = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, image_size=28, patch_size=14, num_channels=3)
VIDEO_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 16, 32, 32),
    down_block_types=("LTX2VideoDownBlock3D",) * 4, decoder_block_out_channels=(8, 16, 32),
    layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
    spatio_temporal_scaling=(True, True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"), upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2), timestep_conditioning=False, patch_size=4, patch_size_t=1, encoder_causal=True,
    decoder_causal=False, encoder_spatial_padding_mode="zeros", decoder_spatial_padding_mode="reflect",
    spatial_compression_ratio=32, temporal_compression_ratio=8)
AUDIO_VAE = dict(base_channels=8, output_channels=2, ch_mult=(1, 1, 1), num_res_blocks=1, attn_resolutions=None,
                 in_channels=2, resolution=64, latent_channels=2, norm_type="pixel", causality_axis="height",
                 dropout=0.0, mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True,
                 mel_bins=16, double_z=True)
VOCODER = dict(in_channels=32, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[12, 11, 8, 4],
               upsample_factors=[6, 5, 4, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3]],
               leaky_relu_negative_slope=0.1, output_sampling_rate=24000)
VOCODER_BWE = dict(in_channels=32, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[11, 8, 8, 4],
                   upsample_factors=[5, 4, 4, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3]],
                   act_fn="snakebeta", antialias=True, bwe_in_channels=32, bwe_hidden_channels=16, bwe_out_channels=2,
                   bwe_upsample_kernel_sizes=[12, 11, 8, 4], bwe_upsample_factors=[6, 5, 4, 2],
                   bwe_resnet_kernel_sizes=[3], bwe_resnet_dilations=[[1, 3]], bwe_act_fn="snakebeta",
                   filter_length=64, hop_length=80, window_length=64, num_mel_channels=16,
                   input_sampling_rate=16000, output_sampling_rate=48000)
CONNECTORS_20 = dict(caption_channels=32, text_proj_in_factor=3, video_connector_num_attention_heads=4,
                     video_connector_attention_head_dim=8, video_connector_num_layers=1,
                     video_connector_num_learnable_registers=8, audio_connector_num_attention_heads=4,
                     audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
                     audio_connector_num_learnable_registers=8, connector_rope_base_seq_len=32, rope_theta=10000.0,
                     rope_double_precision=True, causal_temporal_positioning=False, rope_type="interleaved")
CONNECTORS_23 = dict(CONNECTORS_20, per_modality_projections=True, video_hidden_dim=32, audio_hidden_dim=16,
                     audio_connector_num_attention_heads=2, video_gated_attn=True, audio_gated_attn=True,
                     rope_type="split", rope_double_precision=False, proj_bias=True)
TRANSFORMER_20 = dict(
    in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=16,
    cross_attention_dim=32, vae_scale_factors=(8, 32, 32), pos_embed_max_pos=20, base_height=2048, base_width=2048,
    audio_in_channels=8, audio_out_channels=8, audio_patch_size=1, audio_patch_size_t=1, audio_num_attention_heads=2,
    audio_attention_head_dim=8, audio_cross_attention_dim=16, audio_scale_factor=4, audio_pos_embed_max_pos=20,
    audio_sampling_rate=16000, audio_hop_length=160, num_layers=2, activation_fn="gelu-approximate",
    qk_norm="rms_norm_across_heads", norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=32,
    attention_bias=True, attention_out_bias=True, rope_theta=10000.0, causal_offset=1, rope_type="interleaved",
    rope_double_precision=True, use_prompt_embeddings=True)
TRANSFORMER_23 = dict(TRANSFORMER_20, gated_attn=True, audio_gated_attn=True, cross_attn_mod=True,
                      audio_cross_attn_mod=True, perturbed_attn=True, use_prompt_embeddings=False, rope_type="split",
                      rope_double_precision=False)
SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                 base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, time_shift_type="exponential")


def build_tokenizer(max_length: int = 1024) -> Any:
    """A Gemma tokenizer (byte-fallback BPE, left padding) trained offline on a few captions."""
    import json

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{i:02X}>" for i in range(256)]
    model = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    model.normalizer = normalizers.Replace(" ", "▁")
    model.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next")
    model.train_from_iterator(list(_SENTENCES), trainers.BpeTrainer(vocab_size=380, special_tokens=specials,
                                                                    show_progress=False))
    data = json.loads(model.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in data["merges"]]
    tokenizer = GemmaTokenizer(vocab=data["vocab"], merges=merges, model_max_length=max_length, add_bos_token=True)
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_components(variant: str = "2.0") -> dict[str, Any]:
    """Every pipeline part, tiny and random (seed the global RNG first)."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    newer = variant == "2.3"
    gemma = Gemma3Config(text_config=GEMMA_TEXT, vision_config=GEMMA_VISION, mm_tokens_per_image=4,
                         boi_token_index=380, eoi_token_index=381, image_token_index=382)
    return {
        "tokenizer": build_tokenizer(),
        "text_encoder": Gemma3ForConditionalGeneration(gemma).eval(),
        "connectors": LTX2TextConnectors(**(CONNECTORS_23 if newer else CONNECTORS_20)),
        "transformer": LTX2VideoTransformer3DModel(**(TRANSFORMER_23 if newer else TRANSFORMER_20)),
        "vae": AutoencoderKLLTX2Video(**VIDEO_VAE),
        "audio_vae": AutoencoderKLLTX2Audio(**AUDIO_VAE),
        "vocoder": LTX2VocoderWithBWE(**VOCODER_BWE) if newer else LTX2Vocoder(**VOCODER),
        "scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER),
    }


def make_pipeline_folder(path: str | Path, variant: str = "2.0", size: str = "tiny", seed: int = 0) -> Path:
    """Write an ``LTX2Pipeline`` folder (tiny) or the full architecture's config files (full)."""
    import torch
    from diffusers import LTX2Pipeline

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    path = Path(path)
    if size == "full":
        return write_full_configs(path)
    torch.manual_seed(seed)
    pipeline = LTX2Pipeline(**tiny_components(variant), processor=None, prompt_enhancer=None, duration_head=None)
    pipeline.save_pretrained(path, safe_serialization=True)
    return path


FULL_PARTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder")


def _full_classes() -> dict[str, Any]:
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    return {"transformer": LTX2VideoTransformer3DModel, "connectors": LTX2TextConnectors,
            "vae": AutoencoderKLLTX2Video, "audio_vae": AutoencoderKLLTX2Audio, "vocoder": LTX2Vocoder}


def write_full_configs(path: Path) -> Path:
    """The published LTX-2 (19B) architecture as config files only, built on the meta device (no memory)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    path.mkdir(parents=True, exist_ok=True)
    for name, cls in _full_classes().items():
        with torch.device("meta"):
            module = cls()
        module.save_config(path / name)
    FlowMatchEulerDiscreteScheduler(**SCHEDULER).save_config(path / "scheduler")
    return path


def build_full(path: str | Path, device: Any, dtype: Any) -> dict[str, Any]:
    """Materialise the parts written by :func:`write_full_configs` with random weights on ``device``."""
    import torch

    parts: dict[str, Any] = {}
    for name, cls in _full_classes().items():
        settings = cls.load_config(Path(path) / name)
        with torch.device("meta"):
            module = cls.from_config(settings)
        module = module.to_empty(device=device)
        with torch.no_grad():
            for param in module.parameters():
                param.normal_(0.0, 0.02)
            for buffer_name, buffer in module.named_buffers():
                if buffer.is_floating_point():
                    buffer.fill_(1.0 if "std" in buffer_name else 0.0)
        parts[name] = module.to(dtype).requires_grad_(False)
    return parts
