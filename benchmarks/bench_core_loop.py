"""vtrain's steady-state step time on the tinyflow family against a minimal hand-written loop.

Both do identical work: the same model, LoRA, data order, AdamW, flow-matching loss, clipping off,
fp32 on one CPU thread. Prints the median step time of each and the ratio (target <= 1.05).

    python benchmarks/bench_core_loop.py [--steps 300] [--width 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def vtrain_step_times(args: argparse.Namespace, output_dir: Path) -> list[float]:
    from vtrain import hookimpl
    from vtrain.runner import Runner

    stamps: list[float] = []

    class Clock:
        name = "bench-clock"

        @hookimpl
        def on_step_end(self, step: int) -> None:
            stamps.append(time.perf_counter())

    config = _config(args, output_dir)
    runner = Runner.from_config(config, autoload=False, plugins=["vtrain.testing.plugin", Clock()])
    runner.run()
    return [b - a for a, b in zip(stamps, stamps[1:])][args.warmup:]


def hand_loop_step_times(args: argparse.Namespace) -> list[float]:
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    from vtrain.data.base import collate, group_by_bucket, plan_epoch
    from vtrain.flow_matching import noisy_latents, sample_sigmas
    from vtrain.testing.tinyflow import TinyFlowDataset
    from vtrain.testing.tinyflow_model import TinyFlowModel

    torch.manual_seed(args.seed)
    model = TinyFlowModel(channels=4, width=args.width, depth=args.depth, num_classes=4)
    model.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian",
                                       target_modules=["to_hidden", "to_out", "to_scale"]), model)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    model.train()
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    dataset = TinyFlowDataset(args.samples, 4, 4, args.seed)
    buckets = group_by_bucket(dataset)
    times, epoch, last = [], 0, time.perf_counter()
    while len(times) < args.steps:
        for indices in plan_epoch(buckets, args.batch, args.seed, epoch).batches:
            batch = collate([dataset[i] for i in indices])
            x0 = batch["latents"]
            sigmas = sample_sigmas(x0.shape[0], "logit_norm", 0.0, 1.0)
            noise = torch.randn_like(x0)
            prediction = model(noisy_latents(x0, noise, sigmas), sigmas, batch["labels"])
            loss = ((prediction - (noise - x0)) ** 2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            float(loss.item())
            now = time.perf_counter()
            times.append(now - last)
            last = now
            if len(times) >= args.steps:
                break
        epoch += 1
    return times[args.warmup:]


def _config(args: argparse.Namespace, output_dir: Path) -> dict:
    return {
        "model_family": "tinyflow", "output_dir": str(output_dir), "max_train_steps": args.steps,
        "train_batch_size": args.batch, "learning_rate": 1e-3, "mixed_precision": "no",
        "base_model_default_dtype": "fp32", "lora_rank": 16, "seed": args.seed, "max_grad_norm": 0,
        "tinyflow_width": args.width, "tinyflow_depth": args.depth, "tinyflow_num_samples": args.samples,
        "checkpoint_step_interval": 0, "disable_benchmark": True,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the two loops this many times")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    vt_medians, hand_medians = [], []
    for _ in range(args.rounds):
        hand_medians.append(statistics.median(hand_loop_step_times(args)))
        with tempfile.TemporaryDirectory() as tmp:
            vt_medians.append(statistics.median(vtrain_step_times(args, Path(tmp))))
    vt, hand = min(vt_medians), min(hand_medians)
    print(f"tinyflow width {args.width} depth {args.depth} batch {args.batch}, {args.steps} steps, 1 thread")
    print(f"hand-written loop : {hand * 1e3:8.3f} ms/step (best median of {args.rounds})")
    print(f"vtrain            : {vt * 1e3:8.3f} ms/step (best median of {args.rounds})")
    print(f"ratio vtrain/hand : {vt / hand:8.3f}  (target <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
