"""Write random-initialised LTX-Video pipeline folders built from the real diffusers classes.

``tiny`` keeps the real VAE compression (32x spatial, 8x temporal) with a few thousand
parameters, a 2-layer transformer and a small T5 whose tokenizer is trained offline, so the
whole folder is under a megabyte and loads through exactly the code that reads
``Lightricks/LTX-Video-0.9.5``. ``full`` writes the real 2B-parameter transformer and the real
VAE architecture with random weights (for speed and memory measurements on a GPU); its T5 has
the real width (4096, what the transformer's caption projection expects) but only two layers,
because training reads cached text embeddings and never runs the encoder in the step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SIZES = ("tiny", "full")

_CORPUS_WORDS = (
    "a red green blue yellow white black purple orange circle square triangle ball box moves slides bounces "
    "from left to right top bottom across the frame on over under grey dark light background video clip shape "
    "small large fast slow camera scene of and with in at is are two one spinning rolling"
).split()


def _caption_corpus() -> list[str]:
    import itertools

    colours = ["red", "green", "blue", "yellow", "white", "purple", "orange"]
    shapes = ["circle", "square", "ball", "box", "triangle"]
    motions = ["moves from left to right", "slides from top to bottom", "bounces across the frame",
               "rolls slowly over a dark background", "spins fast on a grey background"]
    lines = [f"a {c} {s} {m}" for c, s, m in itertools.product(colours, shapes, motions)]
    lines.append(" ".join(_CORPUS_WORDS))
    return lines


def train_tokenizer(vocab_size: int = 160, max_length: int = 128) -> Any:
    """A T5 tokenizer (Unigram, Metaspace) trained offline on generic captions of moving shapes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", shrinking_factor=0.75)
    tokenizer.train_from_iterator(_caption_corpus(), trainer=trainer)
    vocab = [(piece, score) for piece, score in tokenizer.get_vocab_with_scores()] \
        if hasattr(tokenizer, "get_vocab_with_scores") else _unigram_vocab(tokenizer)
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=max_length)


def _unigram_vocab(tokenizer: Any) -> list[tuple[str, float]]:
    import json

    model = json.loads(tokenizer.to_str())["model"]
    return [(piece, float(score)) for piece, score in model["vocab"]]


def _tiny_components(latent_channels: int) -> dict[str, Any]:
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

    transformer = LTXVideoTransformer3DModel(
        in_channels=latent_channels, out_channels=latent_channels, patch_size=1, patch_size_t=1,
        num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32, num_layers=2, caption_channels=32)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False), decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1), timestep_conditioning=False, patch_size=4, patch_size_t=1,
        encoder_causal=True, decoder_causal=False)
    return {"transformer": transformer, "vae": vae, **tiny_text_components()}


def tiny_text_components() -> dict[str, Any]:
    """The tiny folder's tokenizer and random-initialised T5 encoder (d_model 32), seeded by the caller."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = train_tokenizer()
    text_config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                           relative_attention_num_buckets=8, relative_attention_max_distance=32,
                           feed_forward_proj="gated-gelu", is_encoder_decoder=False, pad_token_id=0,
                           eos_token_id=1, decoder_start_token_id=0)
    return {"text_encoder": T5EncoderModel(text_config), "tokenizer": tokenizer}


def _full_components() -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    # The class defaults are LTX-Video's published architecture (2B transformer, 128-channel VAE).
    transformer = LTXVideoTransformer3DModel().to(torch.bfloat16)
    vae = AutoencoderKLLTXVideo().to(torch.bfloat16)
    tokenizer = train_tokenizer()
    text_config = T5Config(vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=10240, num_layers=2, num_heads=64,
                           feed_forward_proj="gated-gelu", is_encoder_decoder=False, pad_token_id=0, eos_token_id=1,
                           decoder_start_token_id=0)
    return {"transformer": transformer, "vae": vae, "text_encoder": T5EncoderModel(text_config).to(torch.bfloat16),
            "tokenizer": tokenizer}


def ltx_scheduler() -> Any:
    """The flow-matching scheduler with LTX-Video's published settings."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                           base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)


def make_pipeline_folder(path: str | Path, size: str = "tiny", seed: int = 0, latent_channels: int = 8) -> Path:
    """Write an ``LTXPipeline`` folder at ``path`` and return it. Deterministic for a given seed."""
    import torch
    from diffusers import LTXPipeline

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    path = Path(path)
    torch.manual_seed(seed)
    parts = _tiny_components(latent_channels) if size == "tiny" else _full_components()
    pipeline = LTXPipeline(scheduler=ltx_scheduler(), **parts)
    pipeline.save_pretrained(path, safe_serialization=True)
    return path
