"""Steady-state LTX-Video LoRA step time: vtrain against a minimal diffusers + peft loop.

Both train the same LoRA (same targets, rank, AdamW, norm clipping) on identical cached latents
and text embeddings, seeded the same way; the first ``--warmup`` steps are not timed.

    python benchmarks/bench_ltxvideo_step.py                       # tiny model on CPU (one thread)
    python benchmarks/bench_ltxvideo_step.py --size full --device cuda   # real 2B architecture, random weights

``--size full`` reports s/step, peak VRAM, MFU (model FLOPs: forward + backward) and HFU (plus the
checkpoint recompute) at 768x512x121 and 512x768x49 frames (bf16, gradient checkpointing, batch 1),
with FLOPs counted from the real shapes by :func:`ltx_step_flops` (a test checks it against
``torch.utils.flop_counter.FlopCounterMode``). Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from step_harness import alternate_rounds, parse_step_args, steady

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
FULL_SHAPES = {"768x512x121": (121, 512, 768), "512x768x49": (49, 768, 512)}  # frames, height, width


def cached_samples(count: int, channels: int, latent_shape: tuple[int, int, int], text_dim: int, seed: int) -> list[dict[str, Any]]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(count):
        mask = torch.zeros(128, dtype=torch.bool)
        mask[:40] = True
        samples.append({"latents": torch.randn(channels, *latent_shape, generator=generator),
                        "prompt_embeds": torch.randn(128, text_dim, generator=generator),
                        "prompt_attention_mask": mask, "is_i2v": torch.tensor(False)})
    return samples


class CachedData:
    """A test-only plugin that hands the same cached samples to vtrain."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples = samples

    from vtrain.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def build_dataset(self) -> Any:
        from vtrain_ltxvideo.synthetic import EncodedClipDataset

        return EncodedClipDataset(self.samples)


def vtrain_steps(model_dir: Path, samples: list[dict[str, Any]], steps: int, args: argparse.Namespace) -> list[float]:
    from vtrain.runner import Runner

    out = Path(tempfile.mkdtemp(prefix="bench-ltx-"))
    config = {"model_family": "ltxvideo", "pretrained_model_name_or_path": str(model_dir), "output_dir": str(out),
              "max_train_steps": steps, "train_batch_size": 1, "learning_rate": 1e-4, "lora_rank": args.rank,
              "lora_target": "attention", "seed": 0, "max_grad_norm": 1.0, "grad_clip_method": "norm",
              "mixed_precision": args.mixed_precision, "base_model_default_dtype": args.dtype,
              "gradient_checkpointing": args.gradient_checkpointing}
    # every installed plugin loads, except the throwaway one the test suite installs (it writes a file each step)
    Runner.from_config(config, plugins=[CachedData(samples)], blocked=["example"]).run()
    return [json.loads(line)["step_seconds"] for line in (out / "metrics.jsonl").open()]


def minimal_steps(model_dir: Path, samples: list[dict[str, Any]], steps: int, args: argparse.Namespace) -> list[float]:
    """The floor: diffusers' transformer + peft LoRA + AdamW, nothing else."""
    import torch
    from diffusers import LTXVideoTransformer3DModel
    from peft import LoraConfig

    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    model = LTXVideoTransformer3DModel.from_pretrained(model_dir, subfolder="transformer", torch_dtype=dtype)
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights=True, target_modules=list(TARGETS)))
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
        sample = samples[step % len(samples)]
        x0 = sample["latents"][None].to(device).float()
        sigma = torch.sigmoid(torch.randn(1, device=device))
        noise = torch.randn_like(x0)
        s = sigma.view(-1, 1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        _, _, frames, height, width = x0.shape
        tokens = x_t.permute(0, 2, 3, 4, 1).flatten(1, 3)  # patch size 1
        with autocast:
            prediction = model(hidden_states=tokens.to(dtype), encoder_hidden_states=sample["prompt_embeds"][None].to(device, dtype),
                               timestep=sigma * 1000, encoder_attention_mask=sample["prompt_attention_mask"][None].to(device),
                               num_frames=frames, height=height, width=width, rope_interpolation_scale=(8 / 25, 32, 32),
                               return_dict=False)[0].float()
        loss = ((prediction - (noise - x0).permute(0, 2, 3, 4, 1).flatten(1, 3)) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # one host sync per step, as the trainer's logging does
        times.append(time.perf_counter() - started)
    return times


def ltx_step_flops(config: Any, tokens: int, text_tokens: int, rank: int, batch: int = 1,
                   checkpointing: bool = True) -> dict[str, float]:
    """Matmul FLOPs of one LoRA training step of LTX-Video's transformer, from its real shapes.

    ``config`` has the transformer's ``num_layers``, ``num_attention_heads``, ``attention_head_dim``,
    ``in_channels``, ``out_channels``, ``caption_channels`` (patch size 1, as LTX-Video 0.9.x). LoRA of
    ``rank`` on to_q/to_k/to_v/to_out.0 of both attentions; the base is frozen, so its backward pass
    computes activation gradients only, and only where the input needs one: the text side (caption
    projection, cross-attention k/v) and the first block's self-attention q/k/v take inputs without
    gradient. LTX blocks have no adaLN matmul (a learned table plus the timestep embedding, computed once).
    Returns ``model`` (forward + backward) and ``hardware`` (+ the checkpoint recompute of every block).
    """
    L, d, T, Tt, B, r = config.num_layers, config.num_attention_heads * config.attention_head_dim, tokens, \
        text_tokens, batch, rank
    ffn = 4 * d
    mm = lambda n, i, o: 2 * B * n * i * o  # noqa: E731 - a (n x i) @ (i x o) product, for the whole batch

    # outside the blocks: patch projection in/out, caption projection (2 layers), timestep MLP + adaLN-single
    outside = (mm(T, config.in_channels, d) + mm(T, d, config.out_channels) + mm(Tt, config.caption_channels, d)
               + mm(Tt, d, d) + mm(1, 256, d) + mm(1, d, d) + mm(1, d, 6 * d))
    # one block: self-attention q/k/v/out on video tokens, cross-attention q/out on video and k/v on text, FFN
    base = 4 * mm(T, d, d) + 2 * mm(T, d, d) + 2 * mm(Tt, d, d) + mm(T, d, ffn) + mm(T, ffn, d)
    attention = 2 * mm(T, d, T) + 2 * mm(T, d, Tt)  # QK^T and PV, summed over heads
    lora_one = lambda n: mm(n, d, r) + mm(n, r, d)  # noqa: E731 - x A^T then (x A^T) B^T
    lora = 6 * lora_one(T) + 2 * lora_one(Tt)
    block_forward = base + attention + lora
    forward = outside + L * block_forward

    # backward: activation gradients of the frozen matmuls whose input needs one (not the text side, not
    # the first block's q/k/v), attention 2x its forward, LoRA weight gradients of A and B, and LoRA
    # activation gradients (to A's output always; to x where x needs one)
    base_dx = L * (base - 2 * mm(Tt, d, d)) - 3 * mm(T, d, d)
    lora_weight_grads = L * lora
    lora_dx = L * (6 * mm(T, d, r) + 2 * mm(Tt, d, r)) + (6 * L - 3) * mm(T, r, d)
    backward = mm(T, d, config.out_channels) + base_dx + L * 2 * attention + lora_weight_grads + lora_dx
    recompute = L * block_forward if checkpointing else 0
    return {"forward": forward, "backward": backward, "model": forward + backward,
            "hardware": forward + backward + recompute}


SHAPE_KEYS = ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels",
              "caption_channels")


def transformer_shape(config: Any) -> argparse.Namespace:
    """The fields of a transformer config (a dict or a diffusers ``FrozenDict``) that the FLOP count reads."""
    return argparse.Namespace(**{key: config[key] for key in SHAPE_KEYS})


def run_tiny(args: argparse.Namespace) -> None:
    import torch

    from vtrain_ltxvideo.tiny import make_pipeline_folder

    torch.set_num_threads(args.threads)
    model_dir = make_pipeline_folder(Path(tempfile.mkdtemp(prefix="tiny-ltx-")) / "model", seed=0)
    # 48 tokens a sample, as the reference measurement in the project's facts: 3 latent frames of 4x4
    samples = cached_samples(8, 8, (3, 4, 4), 32, seed=0)
    result = alternate_rounds(lambda: minimal_steps(model_dir, samples, args.steps, args),
                              lambda: vtrain_steps(model_dir, samples, args.steps, args), args)
    print(json.dumps(result))


def run_full(args: argparse.Namespace) -> None:
    import torch
    from diffusers import LTXVideoTransformer3DModel

    from vtrain_ltxvideo.tiny import make_pipeline_folder

    if args.device != "cuda" or not torch.cuda.is_available():
        raise SystemExit("--size full measures the real 2B transformer: run it with --device cuda on a GPU machine")
    model_dir = Path(args.model_dir or tempfile.mkdtemp(prefix="full-ltx-")) / "model"
    if not (model_dir / "model_index.json").is_file():
        make_pipeline_folder(model_dir, size="full", seed=0)
    config = transformer_shape(LTXVideoTransformer3DModel.load_config(model_dir, subfolder="transformer"))
    for name, (frames, height, width) in FULL_SHAPES.items():
        latent = ((frames - 1) // 8 + 1, height // 32, width // 32)
        tokens = latent[0] * latent[1] * latent[2]
        samples = cached_samples(2, 128, latent, 4096, seed=0)
        for label, fn in (("minimal", minimal_steps), ("vtrain", vtrain_steps)):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            times = fn(model_dir, samples, args.steps, args)
            seconds = steady(times, args.warmup)
            flops = ltx_step_flops(config, tokens, 128, args.rank, checkpointing=args.gradient_checkpointing)
            peak = args.peak_tflops * 1e12
            print(json.dumps({"mode": "full-cuda", "shape": name, "loop": label, "tokens": tokens, "s_per_step": seconds,
                              "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30,
                              "mfu": flops["model"] / seconds / peak, "hfu": flops["hardware"] / seconds / peak,
                              "device": torch.cuda.get_device_name()}), flush=True)


def main() -> None:
    args = parse_step_args(__doc__, tiny_steps=200, full_steps=12)
    (run_full if args.size == "full" else run_tiny)(args)


if __name__ == "__main__":
    main()
