"""Rollout's per-step cost: the same LTX-Video LoRA run with rollout off and with max step offset 5 and 10.

Every run uses the tiny random LTX-Video model, the same synthetic clips (encoded once per run, in memory),
seed, LoRA and optimizer; the rollout runs roll out every sample (probability 1) with the given sampler and
ReflexFlow at its defaults. Prints one JSON line per run: median step seconds after ``--warmup`` steps,
the median of the logged ``rollout_seconds`` and the mean ``rollout_mean_k``, and the ratio to the run
without rollout.

    python benchmarks/bench_rollout.py                          # CPU, one thread, unipc
    python benchmarks/bench_rollout.py --sampler euler --offsets 0 5 10 20
    python benchmarks/bench_rollout.py --device cuda --frames 49 --height 512 --width 768 --mixed-precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run(args: argparse.Namespace, model_dir: Path, offset: int) -> dict[str, Any]:
    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    out = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    config = {
        "model_family": "ltxvideo", "pretrained_model_name_or_path": str(model_dir), "output_dir": str(out),
        "max_train_steps": args.steps, "train_batch_size": args.batch, "learning_rate": 1e-3, "lora_rank": 16,
        "lora_target": "attention+ffn", "seed": 0, "max_grad_norm": 1.0, "grad_clip_method": "norm",
        "mixed_precision": args.mixed_precision, "base_model_default_dtype": args.dtype,
    }
    if offset:
        config.update(scheduled_sampling_max_step_offset=offset, scheduled_sampling_probability=1.0,
                      scheduled_sampling_sampler=args.sampler)
    data = SyntheticDataPlugin(count=args.batch * 2, frames=args.frames, height=args.height, width=args.width)
    Runner.from_config(config, plugins=[data], blocked=["example"]).run()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()][args.warmup:]
    result: dict[str, Any] = {"max_step_offset": offset, "sampler": args.sampler if offset else None,
                              "s_per_step": statistics.median(r["step_seconds"] for r in rows)}
    if offset:
        result["rollout_s_per_step"] = statistics.median(r["rollout_seconds"] for r in rows)
        result["mean_k"] = statistics.fmean(r["rollout_mean_k"] for r in rows)
        result["rollout_fraction"] = statistics.fmean(r["rollout_fraction"] for r in rows)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offsets", type=int, nargs="+", default=[0, 5, 10])
    parser.add_argument("--sampler", default="unipc", choices=("unipc", "euler", "dpm", "rk4"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--mixed-precision", default="no")
    args = parser.parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        import torch

        torch.set_num_threads(1)
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    model_dir = make_pipeline_folder(Path(tempfile.mkdtemp(prefix="bench-rollout-model-")) / "tiny", seed=0)
    results = [run(args, model_dir, offset) for offset in args.offsets]
    base = next((r["s_per_step"] for r in results if r["max_step_offset"] == 0), None)
    for result in results:
        if base:
            result["ratio"] = round(result["s_per_step"] / base, 3)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
