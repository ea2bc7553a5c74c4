"""Where an LTX-2 training step's time goes in vtrain: the model's work versus vtrain's own code.

Runs the tiny-model benchmark configuration of ``bench_ltx2_step.py`` (same cached samples, LoRA, AdamW) under
cProfile and splits the steady steps' time by the file each function lives in:

- ``vtrain``: vtrain's own Python (core and plugins) and pluggy's hook calling;
- ``model``: everything else (torch, diffusers, peft; the same work a hand-written loop does).

Python-level time only (``tottime``): time spent inside a C function counts for the C function, so a vtrain
function that calls a torch kernel does not get the kernel's time. The profile slows Python code down,
so the ``vtrain`` share is an upper bound. Prints one JSON line and the top vtrain functions.

    python benchmarks/profile_ltx2_overhead.py [--steps 80] [--warmup 10]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ltx2_step import TARGETS, CachedData, cached_samples  # noqa: E402

OWN = (f"{os.sep}vtrain{os.sep}", f"{os.sep}vtrain_", f"{os.sep}pluggy{os.sep}")


def is_own(filename: str) -> bool:
    """vtrain's core, its plugins and pluggy's hook calling (not the site-packages of torch, diffusers, peft)."""
    return any(part in filename for part in OWN)


class StepWindow:
    """Enables the profiler from the end of the warm-up to the last step, and stamps every step's end."""

    def __init__(self, profiler: cProfile.Profile, warmup: int, steps: int) -> None:
        self.profiler, self.warmup, self.steps = profiler, warmup, steps
        self.stamps: list[float] = []

    from vtrain.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def on_step_end(self, step: int) -> None:
        self.stamps.append(time.perf_counter())
        if step == self.warmup:
            self.profiler.enable()
        elif step == self.steps:
            self.profiler.disable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    import torch

    from vtrain.runner import Runner
    from vtrain_ltx2.tiny import make_pipeline_folder

    torch.set_num_threads(1)
    model_dir = make_pipeline_folder(Path(tempfile.mkdtemp(prefix="tiny-ltx2-")) / "model", seed=0)
    samples = cached_samples(8, (8, 3, 4, 4), (13, 8), (32, 32, 32), seed=0)
    out = Path(tempfile.mkdtemp(prefix="profile-ltx2-"))
    config = {"model_family": "ltx2", "pretrained_model_name_or_path": str(model_dir), "output_dir": str(out),
              "max_train_steps": args.steps, "train_batch_size": 1, "learning_rate": 1e-4, "lora_rank": args.rank,
              "ltx2_lora_targets": TARGETS, "ltx2_i2v_probability": 0.0, "seed": 0, "max_grad_norm": 1.0,
              "grad_clip_method": "norm", "mixed_precision": "no", "base_model_default_dtype": "fp32"}
    profiler = cProfile.Profile()
    window = StepWindow(profiler, args.warmup, args.steps)
    Runner.from_config(config, plugins=[CachedData(samples), window], blocked=["example"]).run()
    profiled = args.steps - args.warmup
    stats = pstats.Stats(profiler)
    own_seconds, total_seconds = 0.0, 0.0
    own: list[tuple[float, str]] = []
    for (filename, line, name), (_calls, _ncalls, tottime, _cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total_seconds += tottime
        if is_own(filename):
            own_seconds += tottime
            own.append((tottime, f"{Path(filename).parent.name}/{Path(filename).name}:{line} {name}"))
    wall = window.stamps[args.steps - 1] - window.stamps[args.warmup - 1]
    print(json.dumps({"mode": "tiny-cpu-profile", "profiled_steps": profiled,
                      "profiled_ms_per_step": 1000 * wall / profiled,
                      "python_ms_per_step": 1000 * total_seconds / profiled,
                      "vtrain_own_ms_per_step": 1000 * own_seconds / profiled,
                      "vtrain_own_share": own_seconds / wall}))
    for seconds, where in sorted(own, reverse=True)[: args.top]:
        print(f"{1000 * seconds / profiled:8.3f} ms/step  {where}")


if __name__ == "__main__":
    main()
