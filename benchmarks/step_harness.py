"""What the per-step benchmarks (``bench_ltxvideo_step.py``, ``bench_ltx2_step.py``) share: their command line,
the steady-state time of a run, and the alternating rounds of the tiny CPU comparison."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable


def parse_step_args(doc: str | None, tiny_steps: int, full_steps: int) -> argparse.Namespace:
    """``--size tiny|full``, steps, warm-up, threads, rounds, LoRA rank, model folder and peak TFLOPS; the
    precision follows the size (tiny: fp32 without autocast; full: bf16 with gradient checkpointing)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed + warm-up steps (tiny {tiny_steps}, full {full_steps})")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (tiny 10, full 3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="tiny: alternate the two loops this many times")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--model-dir", default=None, help="full: reuse a folder written by make-tiny --size full")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200: 989)")
    args = parser.parse_args()
    full = args.size == "full"
    args.steps = args.steps or (full_steps if full else tiny_steps)
    args.warmup = args.warmup if args.warmup is not None else (3 if full else 10)
    args.mixed_precision = "bf16" if full else "no"
    args.dtype = "bf16" if full else "fp32"
    args.gradient_checkpointing = full
    return args


def steady(times: list[float], warmup: int) -> float:
    """The median step time after the first ``warmup`` steps."""
    return statistics.median(times[warmup:])


def alternate_rounds(minimal: Callable[[], list[float]], ours: Callable[[], list[float]], args: argparse.Namespace
                     ) -> dict[str, object]:
    """Run the minimal loop and vtrain alternately ``args.rounds`` times; each side's steady time per round, the
    best of each side and its ratio (load on a shared machine only adds time), the median of each side and its
    ratio, every round's ratio, and the load average."""
    floors, mine = [], []
    for _ in range(args.rounds):
        floors.append(steady(minimal(), args.warmup))
        mine.append(steady(ours(), args.warmup))
    return {"mode": "tiny-cpu", "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
            "rounds": args.rounds, "minimal_s_per_step": min(floors), "vtrain_s_per_step": min(mine),
            "ratio": min(mine) / min(floors),
            "median_ratio": statistics.median(mine) / statistics.median(floors),
            "round_ratios": [ours_time / floor for ours_time, floor in zip(mine, floors)],
            "minimal_rounds": floors, "vtrain_rounds": mine, "load_average": os.getloadavg()}
