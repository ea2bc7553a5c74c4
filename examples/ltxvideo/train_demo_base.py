"""Train the demo's tiny LTX-Video base model from scratch on CPU and write it as a pipeline folder.

    python examples/ltxvideo/train_demo_base.py [--out examples/ltxvideo/demo-base] [--threads 1]

``make demo`` does not run this: its result is committed in ``examples/ltxvideo/demo-base`` (2.9 MB
in fp16), so the demo only trains a LoRA (about 25 s). Rerun it to rebuild or change the base.

1. The VAE (``AutoencoderKLLTXVideo``, 1.1 M parameters, 16x spatial and 8x temporal compression)
   learns to reconstruct 9x64x64 clips of a 16 px square moving left or right (2x4x4 latents, 8
   channels), as a deterministic autoencoder on ``mean + 0.05 * noise``. Plain MSE stalls on
   "background only", so the square's pixels weigh 11x, and a small L2 penalty keeps the latents
   near zero. Then the posterior's std is set to that 0.05 (:func:`set_posterior_std`), so a trainer
   that samples the posterior sees the latents the decoder knows, and the measured per-channel latent
   mean/std go into ``latents_mean``/``latents_std``, which diffusers' pipeline and vtrain use to
   normalise.
2. The transformer (``LTXVideoTransformer3DModel``, 0.3 M parameters) learns rectified flow on those
   latents (logit-normal sigma, timestep = sigma * 1000, 10% empty captions for guidance) for
   captions like "a red square moves to the right", with the tiny random T5 of ``vtrain_ltxvideo.tiny``
   frozen. Only red and green squares are shown: blue is left for the demo's LoRA to teach.

Watch the VAE's held-out PSNR. Leaving the ~16-19 dB plateau is a matter of luck in the first
~1000 steps (the same settings broke through on one run and not on another, and 1 or 2 threads
change the rounding enough to decide it); once it has (above ~22 dB), it climbs to ~28 dB. If it
has not, continue the saved VAE rather than starting over: ``--vae-from OUT/vae --vae-more 1200``
(this also retrains the transformer on the improved latents). The committed base was built that
way (its ``training.json`` records each stage): 1400 steps from scratch (by the experiment
script this one was written from, same settings) (19.1 dB, squares of only
some colours right), then 1200 more (28.0 dB), then 4000 transformer steps (loss 0.056). On a
machine shared with other jobs, 1 thread is much faster than 2.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent
BASE_COLOURS = ("red", "green")
FRAMES = 9
TEXT_LENGTH = 32
SETTINGS: dict[str, Any] = {"size": 64}  # frame size in pixels (--size)
MEASURED: dict[str, float] = {}  # the last held-out PSNR and transformer loss, for training.json
VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(16, 32, 32, 32),
    decoder_block_out_channels=(16, 32, 32, 32), layers_per_block=(1, 1, 1, 1, 1),
    decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, False),
    decoder_spatio_temporal_scaling=(True, True, True, False), decoder_inject_noise=(False,) * 5,
    downsample_type=("conv",) * 4, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
    timestep_conditioning=False, patch_size=2, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    scaling_factor=1.0)
TRANSFORMER_CONFIG: dict[str, Any] = dict(
    in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=16,
    cross_attention_dim=64, num_layers=4, caption_channels=32, qk_norm="rms_norm_across_heads")


def log(message: str) -> None:
    print(message, flush=True)


def to_model_range(pixels: Any) -> Any:
    """(B, F, 3, H, W) in [0, 1] -> (B, 3, F, H, W) in [-1, 1], what the VAE reads."""
    return pixels.permute(0, 2, 1, 3, 4) * 2 - 1


def psnr(decoded: Any, target: Any) -> float:
    import torch

    return float(10 * torch.log10(4.0 / ((decoded.clamp(-1, 1) - target) ** 2).mean()))


def train_vae(steps: int, batch_size: int, seed: int, start: Any = None, noise: float = 0.05,
              l2: float = 1e-4) -> Any:
    import torch
    from diffusers import AutoencoderKLLTXVideo

    from vtrain_ltxvideo.synthetic import SQUARE_COLOURS, random_square_clips

    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(**VAE_CONFIG) if start is None else start.train()
    optimizer = torch.optim.AdamW(vae.parameters(), 1e-3, weight_decay=0.0)
    data = torch.Generator().manual_seed(seed + 1)
    held_out = to_model_range(random_square_clips(torch.Generator().manual_seed(12345), 12, tuple(SQUARE_COLOURS), FRAMES,
                                                   SETTINGS['size'])[0])
    started = time.perf_counter()
    for step in range(1, steps + 1):
        video = to_model_range(random_square_clips(data, batch_size, tuple(SQUARE_COLOURS), FRAMES, SETTINGS['size'])[0])
        posterior = vae.encode(video).latent_dist
        # a deterministic autoencoder with a little latent noise (sampling the untrained posterior collapsed it)
        decoded = vae.decode(posterior.mean + noise * torch.randn_like(posterior.mean)).sample
        square = ((video - video[:, :, :1, :1, :1]).abs().amax(1, keepdim=True) > 0.3).float()
        loss = (((decoded - video) ** 2) * (1 + 10 * square)).mean() + l2 * (posterior.mean ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps:
            with torch.no_grad():
                quality = psnr(vae.decode(vae.encode(held_out).latent_dist.mode()).sample, held_out)
            MEASURED["vae_held_out_psnr_db"] = round(quality, 2)
            log(f"vae step {step}/{steps}  {time.perf_counter() - started:.0f} s  held-out PSNR {quality:.1f} dB  "
                f"latent std {float(posterior.mean.detach().std()):.3f}")
        elif step % 25 == 0:
            log(f"vae step {step}/{steps}  {time.perf_counter() - started:.0f} s  loss {loss.item():.4f}")
    vae.eval()
    set_posterior_std(vae, noise)
    with torch.no_grad():  # latent statistics for the pipeline's normalisation
        stats = torch.Generator().manual_seed(seed + 2)
        latents = torch.cat([vae.encode(to_model_range(random_square_clips(stats, 16, tuple(SQUARE_COLOURS), FRAMES, SETTINGS['size'])[0]))
                             .latent_dist.mode() for _ in range(4)])
        vae.latents_mean.copy_(latents.mean((0, 2, 3, 4)))
        vae.latents_std.copy_(latents.std((0, 2, 3, 4)))
    return vae


def set_posterior_std(vae: Any, std: float) -> None:
    """Make the encoder's posterior std a constant ``std`` (the latent noise the decoder was trained with).

    The VAE is trained as a deterministic autoencoder on ``mean + noise``, so the encoder's log-variance
    output is never trained and stays near 0 (std about 1, as large as the latents): a trainer that samples
    the posterior (vtrain's ``vae_latent_sampling: sample``, finetrainers' default) would drown the signal.
    The log-variance is the last output channel of ``encoder.conv_out``; zeroing its weights and setting its
    bias to ``2 ln std`` makes sampling add exactly the noise the decoder expects.
    """
    import math

    import torch

    conv = vae.encoder.conv_out.conv
    with torch.no_grad():
        conv.weight[-1].zero_()
        conv.bias[-1].fill_(2 * math.log(std))


def encode_pool(pipeline: Any, count: int, seed: int) -> tuple[Any, list[str]]:
    """``count`` base-colour clips as normalised latents, with their captions."""
    import torch

    from vtrain_ltxvideo.synthetic import random_square_clips

    vae, generator = pipeline.vae, torch.Generator().manual_seed(seed)
    latents, captions = [], []
    with torch.no_grad():
        for _ in range(count // 32):
            pixels, names = random_square_clips(generator, 32, BASE_COLOURS, FRAMES, SETTINGS['size'])
            raw = vae.encode(to_model_range(pixels)).latent_dist.mode()
            latents.append(pipeline._normalize_latents(raw, vae.latents_mean, vae.latents_std, vae.config.scaling_factor))
            captions += names
    return torch.cat(latents), captions


def train_transformer(pipeline: Any, steps: int, batch_size: int, seed: int) -> None:
    import torch

    from vtrain_ltxvideo.synthetic import SQUARE_DIRECTIONS, square_caption

    transformer, vae = pipeline.transformer, pipeline.vae
    prompts = [square_caption(c, d) for c in BASE_COLOURS for d in SQUARE_DIRECTIONS] + [""]
    with torch.no_grad():
        embeds, mask, _, _ = pipeline.encode_prompt(prompts, do_classifier_free_guidance=False,
                                                    max_sequence_length=TEXT_LENGTH)
    latents, captions = encode_pool(pipeline, 512, seed + 7)
    caption_index = torch.tensor([prompts.index(c) for c in captions])
    _, _, frames, height, width = latents.shape
    tokens = pipeline._pack_latents(latents, 1, 1)
    rope = (vae.temporal_compression_ratio / 25, vae.spatial_compression_ratio, vae.spatial_compression_ratio)
    optimizer = torch.optim.AdamW(transformer.parameters(), 1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    transformer.train()
    started, smoothed = time.perf_counter(), None
    for step in range(1, steps + 1):
        pick = torch.randint(0, len(tokens), (batch_size,), generator=generator)
        x0, which = tokens[pick], caption_index[pick].clone()
        which[torch.rand(batch_size, generator=generator) < 0.1] = len(prompts) - 1  # the empty caption
        sigma = torch.sigmoid(torch.randn(batch_size, generator=generator))
        noise = torch.randn(x0.shape, generator=generator)
        noisy = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
        prediction = transformer(hidden_states=noisy, encoder_hidden_states=embeds[which], timestep=sigma * 1000,
                                 encoder_attention_mask=mask[which], num_frames=frames, height=height, width=width,
                                 rope_interpolation_scale=rope, return_dict=False)[0]
        loss = ((prediction - (noise - x0)) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        MEASURED["transformer_loss"] = round(smoothed, 4)
        if step % 250 == 0 or step == steps:
            log(f"transformer step {step}/{steps}  {time.perf_counter() - started:.0f} s  loss {smoothed:.4f}")
    transformer.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "demo-base", help="pipeline folder to write")
    parser.add_argument("--vae-steps", type=int, default=1100)
    parser.add_argument("--vae-batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels (the demo uses 64)")
    parser.add_argument("--vae-noise", type=float, default=0.05, help="latent noise while training the VAE")
    parser.add_argument("--vae-temporal-4x", action="store_true",
                        help="4x temporal and 8x spatial compression instead of 8x and 16x (an easier code to learn)")
    parser.add_argument("--vae-l2", type=float, default=1e-4, help="weight of the L2 penalty on the VAE latents")
    parser.add_argument("--vae-from", type=Path, default=None,
                        help="a VAE folder (the `vae` folder a previous run wrote): used as is, or trained further "
                             "for --vae-more steps")
    parser.add_argument("--vae-more", type=int, default=0, help="with --vae-from: train it this many more steps")
    parser.add_argument("--transformer-steps", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (on a machine shared with other jobs 1 is much faster than 2)")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="dtype of the saved weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from diffusers import LTXPipeline, LTXVideoTransformer3DModel

    from vtrain_ltxvideo.tiny import ltx_scheduler, tiny_text_components

    torch.set_num_threads(args.threads)
    SETTINGS["size"] = args.size
    started = time.perf_counter()
    if args.vae_temporal_4x:
        VAE_CONFIG.update(spatio_temporal_scaling=(True, True, False, False),
                          decoder_spatio_temporal_scaling=(True, True, False, False))
    if args.vae_from is not None:
        from diffusers import AutoencoderKLLTXVideo

        vae = AutoencoderKLLTXVideo.from_pretrained(args.vae_from, torch_dtype=torch.float32).eval()
        set_posterior_std(vae, args.vae_noise)
        if args.vae_more:
            vae = train_vae(args.vae_more, args.vae_batch, args.seed + 100, start=vae, noise=args.vae_noise, l2=args.vae_l2)
            vae.save_pretrained(args.out / "vae")
    else:
        vae = train_vae(args.vae_steps, args.vae_batch, args.seed, noise=args.vae_noise, l2=args.vae_l2)
        vae.save_pretrained(args.out / "vae")  # kept, so the transformer can be retrained alone (--vae-from)
    torch.manual_seed(args.seed)
    text = tiny_text_components()
    transformer = LTXVideoTransformer3DModel(**TRANSFORMER_CONFIG)
    pipeline = LTXPipeline(scheduler=ltx_scheduler(), vae=vae, transformer=transformer, **text)
    pipeline.text_encoder.eval()
    train_transformer(pipeline, args.transformer_steps, 32, args.seed)
    if args.dtype == "fp16":
        pipeline.to(torch.float16)
    pipeline.save_pretrained(args.out, safe_serialization=True)
    (args.out / "training.json").write_text(json.dumps({
        "vae_steps": 0 if args.vae_from else args.vae_steps, "vae_from": str(args.vae_from or ""),
        "vae_more": args.vae_more if args.vae_from else 0, "vae_noise": args.vae_noise, "size": args.size, **MEASURED,
        "vae_batch": args.vae_batch, "transformer_steps": args.transformer_steps, "seed": args.seed,
        "base_colours": list(BASE_COLOURS), "frames": FRAMES, "text_length": TEXT_LENGTH, "dtype": args.dtype,
        "threads": args.threads, "wall_seconds": round(time.perf_counter() - started),
    }, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
