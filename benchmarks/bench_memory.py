"""Peak memory and step time of each memory/speed option against the plain run, on the same work.

Every option trains the same LoRA on the same cached latents and text embeddings in its own
process (so peaks do not mix): peak RSS on CPU, and peak CUDA memory on a GPU.

    python benchmarks/bench_memory.py                                  # tiny LTX-Video on CPU
    python benchmarks/bench_memory.py --size full --device cuda        # real 2B architecture, random weights
    python benchmarks/bench_memory.py --only plain,nf4-bnb             # a subset

Prints one JSON line per option, then a table relative to ``plain``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "int8-quanto": {"base_model_precision": "int8-quanto"},
    "int4-quanto": {"base_model_precision": "int4-quanto"},
    "fp8-quanto": {"base_model_precision": "fp8-quanto"},
    "int8-torchao": {"base_model_precision": "int8-torchao"},
    "fp8-torchao": {"base_model_precision": "fp8-torchao"},
    "nf4-bnb": {"base_model_precision": "nf4-bnb"},
    "group-offload-ram": {"enable_group_offload": True},
    "group-offload-disk": {"enable_group_offload": True, "group_offload_to_disk_path": "{tmp}/offload"},
    "bnb-adamw8bit": {"optimizer": "bnb-adamw8bit"},
    "lowest-memory": {"base_model_precision": "nf4-bnb", "optimizer": "bnb-lion8bit-paged"},
}
SHAPES = {"tiny": (3, 2, 2), "full": (7, 16, 22)}  # latent frames, height, width (full: 49 frames at 704x512)


def run_one(name: str, model_dir: str, size: str, device: str, steps: int, warmup: int, tmp: str) -> dict[str, Any]:
    import resource

    import torch

    from vtrain.runner import Runner

    torch.manual_seed(0)
    dtype = "fp32" if size == "tiny" else "bf16"
    overrides = {k: (v.format(tmp=tmp) if isinstance(v, str) else v) for k, v in OPTIONS[name].items()}
    config = {"model_family": "ltxvideo", "pretrained_model_name_or_path": model_dir, "output_dir": f"{tmp}/out-{name}",
              "mixed_precision": "no" if size == "tiny" else "bf16", "base_model_default_dtype": dtype,
              "lora_rank": 16, "gradient_checkpointing": True, "learning_rate": 1e-4, "max_train_steps": steps,
              "quantize_via": "cpu", **overrides}
    runner = Runner.from_config(config)
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.prepare_model(bundle, runner.config, torch.device(device))
    from vtrain.optim import build_optimizer

    optimizer = build_optimizer([p for _, p in bundle.trainable_named_parameters()], runner.config, runner.optimizers)
    channels = int(bundle.meta["latent_channels"])
    text_dim = int(bundle.model.config.caption_channels)
    frames, height, width = SHAPES[size]
    batch = {"latents": torch.randn(1, channels, frames, height, width, device=device),
             "prompt_embeds": torch.randn(1, 128, text_dim, device=device),
             "prompt_attention_mask": torch.ones(1, 128, dtype=torch.bool, device=device),
             "is_i2v": torch.tensor([False])}
    from vtrain.family import TrainState

    state = TrainState(shift_for=lambda shape: None)
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=size == "full")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        with autocast:
            loss = runner.hooks.compute_loss(bundle, batch, runner.config, state).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    result = {"option": name, "size": size, "device": device, "s_per_step": sum(times) / len(times),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "final_loss": float(loss.detach())}
    if device.startswith("cuda"):
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name(0)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SHAPES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated option names")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one option
        print(json.dumps(run_one(args.one, args.model_dir, args.size, args.device, args.steps, args.warmup, args.tmp)))
        return 0
    names = [n for n in (args.only.split(",") if args.only else OPTIONS) if n]
    if args.device == "cpu":
        names = [n for n in names if n != "fp8dq-torchao"]
    with tempfile.TemporaryDirectory() as tmp:
        from vtrain_ltxvideo.tiny import make_pipeline_folder

        model_dir = str(make_pipeline_folder(Path(tmp) / f"ltx-{args.size}", size=args.size, seed=0))
        results = []
        for name in names:
            cmd = [sys.executable, __file__, "--one", name, "--model-dir", model_dir, "--tmp", tmp, "--size", args.size,
                   "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                print(json.dumps({"option": name, "error": out.stderr.strip().splitlines()[-1:]}))
                continue
            results.append(json.loads(lines[-1]))
            print(lines[-1], flush=True)
    base = next((r for r in results if r["option"] == "plain"), None)
    if base:
        key = "cuda_peak_mib" if "cuda_peak_mib" in base else "peak_rss_mib"
        print(f"\n{'option':22s} {key:>14s} {'vs plain':>9s} {'s/step':>9s} {'vs plain':>9s}")
        for r in results:
            print(f"{r['option']:22s} {r[key]:14.1f} {r[key] / base[key]:9.2f} {r['s_per_step']:9.4f} "
                  f"{r['s_per_step'] / base['s_per_step']:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
