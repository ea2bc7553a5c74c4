"""Steady-state LTX-2 (audio + video) LoRA step time: vtrain against a minimal diffusers + peft loop.

Both train the same LoRA (the same exact attention targets, rank, AdamW, norm clipping) on identical
cached video latents, audio latents and text embeddings, with the same work per step: one transformer
forward over both streams with the pipeline's coordinates, flow matching on both modalities, backward,
clip, step. The first ``--warmup`` steps are not timed.

    python benchmarks/bench_ltx2_step.py                                  # tiny model on CPU (one thread)
    python benchmarks/bench_ltx2_step.py --size full --device cuda        # the 19B architecture, random weights

``--size full`` reports s/step, peak VRAM and MFU of a LoRA step at 768x512x121 frames with its
5 s of audio (bf16, gradient checkpointing, batch 1). Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from step_harness import alternate_rounds, parse_step_args, steady

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGETS = "attention"  # video, audio and cross-modal attention q/k/v/out
FULL_SHAPE = (121, 512, 768)  # frames, height, width; 24 fps


def cached_samples(count: int, video: tuple[int, ...], audio: tuple[int, int], text: tuple[int, int, int],
                   seed: int) -> list[dict[str, Any]]:
    """Random cached samples: video latents (C, F, H, W), audio tokens (L, D), text (tokens, video dim, audio dim)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    tokens, video_dim, audio_dim = text
    return [{"latents": torch.randn(*video, generator=generator),
             "audio_latents": torch.randn(*audio, generator=generator),
             "video_prompt_embeds": torch.randn(tokens, video_dim, generator=generator),
             "audio_prompt_embeds": torch.randn(tokens, audio_dim, generator=generator),
             "prompt_attention_mask": torch.ones(tokens), "fps": torch.tensor(24.0)} for _ in range(count)]


class CachedData:
    """A benchmark-only plugin that hands the same cached samples to vtrain (and, for ``full``, the model)."""

    def __init__(self, samples: list[dict[str, Any]], bundle: Any = None) -> None:
        self.samples, self.bundle = samples, bundle

    from vtrain.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def build_dataset(self) -> Any:
        from vtrain_ltx2.synthetic import EncodedAVDataset

        return EncodedAVDataset(self.samples)

    @_hookimpl(tryfirst=True)
    def load_model(self) -> Any:
        return self.bundle


def full_bundle(model_dir: Path, device: Any, dtype: Any) -> Any:
    """The 19B architecture with random weights on the GPU, as a bundle (no text encoder: text is cached)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from vtrain.family import ModelBundle
    from vtrain_ltx2.tiny import build_full

    parts = build_full(model_dir, device, dtype)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(model_dir, subfolder="scheduler")
    transformer = parts.pop("transformer")
    parts["text_encoder_connectors"] = parts.pop("connectors")
    return ModelBundle(family="ltx2", model=transformer, noise_scheduler=scheduler, components=parts,
                       meta={"compute_dtype": dtype, "dtype": str(dtype)})


def vtrain_steps(model_dir: Path, samples: list[dict[str, Any]], steps: int, args: argparse.Namespace,
                 bundle: Any = None) -> list[float]:
    from vtrain.runner import Runner

    out = Path(tempfile.mkdtemp(prefix="bench-ltx2-"))
    config = {"model_family": "ltx2", "pretrained_model_name_or_path": str(model_dir), "output_dir": str(out),
              "max_train_steps": steps, "train_batch_size": 1, "learning_rate": 1e-4, "lora_rank": args.rank,
              "ltx2_lora_targets": TARGETS, "ltx2_i2v_probability": 0.0, "seed": 0, "max_grad_norm": 1.0,
              "grad_clip_method": "norm", "mixed_precision": args.mixed_precision,
              "base_model_default_dtype": args.dtype, "gradient_checkpointing": args.gradient_checkpointing}
    clock = StepClock()
    Runner.from_config(config, plugins=[CachedData(samples, bundle), clock], blocked=["example"]).run()
    return clock.durations()


class StepClock:
    """Stamps the end of every update: the time between two stamps is the whole step as the loop runs it (data,
    forward, backward, clip, optimizer, logging, hooks), not only the part ``step_seconds`` measures."""

    def __init__(self) -> None:
        self.stamps: list[float] = [time.perf_counter()]

    from vtrain.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def on_train_begin(self) -> None:
        self.stamps = [time.perf_counter()]

    @_hookimpl
    def on_step_end(self) -> None:
        self.stamps.append(time.perf_counter())

    def durations(self) -> list[float]:
        return [after - before for before, after in zip(self.stamps, self.stamps[1:])]


def minimal_steps(model_dir: Path, samples: list[dict[str, Any]], steps: int, args: argparse.Namespace,
                  transformer: Any = None) -> list[float]:
    """The floor: diffusers' transformer + peft LoRA + AdamW and the pipeline's call, nothing else."""
    import torch
    from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift
    from peft import LoraConfig

    from vtrain_ltx2.adapters import target_regex

    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    torch.manual_seed(0)
    model = transformer if transformer is not None else \
        LTX2VideoTransformer3DModel.from_pretrained(model_dir, subfolder="transformer", torch_dtype=dtype)
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=target_regex([TARGETS])))
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.to(device).train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.mixed_precision == "bf16")
    times = []
    for step in range(steps):
        started = time.perf_counter()
        sample = {k: v[None].to(device) for k, v in samples[step % len(samples)].items()}
        x0, a0 = sample["latents"].float(), sample["audio_latents"].float()
        _, _, frames, height, width = x0.shape
        mu = calculate_shift(frames * height * width, 1024, 4096, 0.95, 2.05)
        u = torch.sigmoid(torch.randn(1, device=device))
        sigma = math.exp(mu) / (math.exp(mu) + (1 / u - 1))
        noise, audio_noise = torch.randn_like(x0), torch.randn_like(a0)
        s = sigma.view(-1, 1, 1, 1, 1)
        x_t = LTX2Pipeline._pack_latents((1 - s) * x0 + s * noise)
        a_t = (1 - sigma.view(-1, 1, 1)) * a0 + sigma.view(-1, 1, 1) * audio_noise
        t = sigma * 1000
        with autocast:
            video_pred, audio_pred = model(
                hidden_states=x_t.to(dtype), audio_hidden_states=a_t.to(dtype),
                encoder_hidden_states=sample["video_prompt_embeds"].to(dtype),
                audio_encoder_hidden_states=sample["audio_prompt_embeds"].to(dtype), timestep=t, audio_timestep=t,
                sigma=t, audio_sigma=t, encoder_attention_mask=sample["prompt_attention_mask"],
                audio_encoder_attention_mask=sample["prompt_attention_mask"], num_frames=frames, height=height,
                width=width, fps=24.0, audio_num_frames=a0.shape[1],
                video_coords=model.rope.prepare_video_coords(1, frames, height, width, device, fps=24.0),
                audio_coords=model.audio_rope.prepare_audio_coords(1, a0.shape[1], device), use_cross_timestep=True,
                return_dict=False)
        loss = ((video_pred.float() - LTX2Pipeline._pack_latents(noise - x0)) ** 2).mean() + \
            ((audio_pred.float() - (audio_noise - a0)) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # one host sync per step, as the trainer's logging does
        times.append(time.perf_counter() - started)
    if transformer is not None:
        model.delete_adapters("default")
    return times


def forward_flops(model: Any, video_tokens: int, audio_tokens: int, text_tokens: int) -> float:
    """Matmul FLOPs of one forward: every block Linear times the tokens of its stream, plus attention scores."""
    import torch

    stream = {"attn1": (video_tokens, video_tokens), "attn2": (video_tokens, text_tokens),
              "audio_attn1": (audio_tokens, audio_tokens), "audio_attn2": (audio_tokens, text_tokens),
              "audio_to_video_attn": (video_tokens, audio_tokens), "video_to_audio_attn": (audio_tokens, video_tokens),
              "ff": (video_tokens, video_tokens), "audio_ff": (audio_tokens, audio_tokens)}
    total = 0.0
    for name, module in model.transformer_blocks.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        parts = name.split(".")
        queries, keys = stream.get(parts[1], (video_tokens, video_tokens))
        tokens = keys if parts[-1] in ("to_k", "to_v") else queries
        total += 2 * module.in_features * module.out_features * tokens
    for name, module in model.transformer_blocks.named_modules():
        if name.split(".")[-1] in stream and hasattr(module, "to_q") and name.split(".")[-1] not in ("ff", "audio_ff"):
            queries, keys = stream[name.split(".")[-1]]
            total += 4 * queries * keys * module.to_q.out_features
    return total


def run_tiny(args: argparse.Namespace) -> None:
    import torch

    from vtrain_ltx2.tiny import make_pipeline_folder

    torch.set_num_threads(args.threads)
    model_dir = make_pipeline_folder(Path(tempfile.mkdtemp(prefix="tiny-ltx2-")) / "model", seed=0)
    # 48 video tokens (3 latent frames of 4x4) and 13 audio tokens a sample, 32 text tokens
    samples = cached_samples(8, (8, 3, 4, 4), (13, 8), (32, 32, 32), seed=0)
    result = alternate_rounds(lambda: minimal_steps(model_dir, samples, args.steps, args),
                              lambda: vtrain_steps(model_dir, samples, args.steps, args), args)
    print(json.dumps(result))


def run_full(args: argparse.Namespace) -> None:
    import torch

    from vtrain_ltx2.tiny import write_full_configs

    if args.device != "cuda" or not torch.cuda.is_available():
        raise SystemExit("--size full measures the 19B transformer: run it with --device cuda on a GPU machine")
    model_dir = Path(args.model_dir or Path(tempfile.mkdtemp(prefix="full-ltx2-")) / "model")
    if not (model_dir / "transformer" / "config.json").is_file():
        write_full_configs(model_dir)
    frames, height, width = FULL_SHAPE
    latent = ((frames - 1) // 8 + 1, height // 32, width // 32)
    audio_tokens = round(frames / 24 * 16000 / 160 / 4)
    samples = cached_samples(2, (128, *latent), (audio_tokens, 128), (1024, 3840, 3840), seed=0)
    bundle = full_bundle(model_dir, torch.device("cuda"), torch.bfloat16)
    video_tokens = latent[0] * latent[1] * latent[2]
    flops = forward_flops(bundle.model, video_tokens, audio_tokens, 1024) * (4 if args.gradient_checkpointing else 3)
    for label in ("minimal", "vtrain"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        times = minimal_steps(model_dir, samples, args.steps, args, transformer=bundle.model) if label == "minimal" \
            else vtrain_steps(model_dir, samples, args.steps, args, bundle=bundle)
        seconds = steady(times, args.warmup)
        print(json.dumps({"mode": "full-cuda", "shape": "768x512x121+audio", "loop": label, "video_tokens": video_tokens,
                          "audio_tokens": audio_tokens, "s_per_step": seconds,
                          "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30,
                          "mfu": flops / seconds / (args.peak_tflops * 1e12), "device": torch.cuda.get_device_name()}),
              flush=True)


def main() -> None:
    args = parse_step_args(__doc__, tiny_steps=120, full_steps=8)
    (run_full if args.size == "full" else run_tiny)(args)


if __name__ == "__main__":
    main()
