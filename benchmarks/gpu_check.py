"""One-shot check of every GPU path of vtrain on a single NVIDIA GPU; prints one table.

    python benchmarks/gpu_check.py                 # real-size LTX-Video 2B (random weights), bf16, CUDA
    python benchmarks/gpu_check.py --dry           # the same paths on the tiny model on the CPU (CI)
    python benchmarks/gpu_check.py --only sage,resume --model-dir /tmp/ltx-full   # a subset, reuse the folder

Each path is a short ``vtrain`` run (LoRA rank 16 on the attention, gradient checkpointing, batch 1,
cached latents and text embeddings, no download): bf16 steps at a small size and at 768x512x49,
validation with SageAttention, self-attention on PyTorch's flash kernel, each quantised base, group
offload (RAM, disk, RAM with a torchao base), model CPU offload, regional compile, a resume round
trip, and the configure-time refusals of combinations that cannot work. A failing path does not stop
the others; the exit status is 1 when any path failed (or was not reached within ``--budget``).

Columns: path, result, s/step (median after the first step), peak VRAM (``max_memory_allocated``).
Paths that need CUDA are reported as skipped in ``--dry`` mode.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

SMALL = (25, 320, 512)  # frames, height, width
REAL = (49, 512, 768)
DRY_SHAPE = (9, 128, 128)
VALIDATION = {"validation_prompt": "a red ball rolls across a dark floor", "validation_resolution": "256x256",
              "validation_num_video_frames": 9, "validation_num_inference_steps": 2}


@dataclass
class Check:
    """One checked path: config overrides, the clip shape, and what must hold afterwards."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, int, int] = SMALL
    steps: int = 4
    cuda_only: str = ""  # why the path cannot run on the CPU (skipped in --dry)
    check: Callable[[Any, Any, Any], None] | None = None  # (runner, result, context) after the run
    kind: str = "train"  # train | resume | refuse


@dataclass
class Row:
    path: str
    result: str
    s_per_step: float | None = None
    peak_gib: float | None = None


def components_on_cpu(runner: Any, result: Any, context: Any) -> None:
    """After the run, the VAE and text encoder are back on the CPU (released after validation)."""
    bundle = context["bundle"]
    for name, component in bundle.components.items():
        params = list(getattr(component, "parameters", lambda: [])())
        if params and params[0].device.type != "cpu":
            raise AssertionError(f"{name} is still on {params[0].device} after validation")


def validated(runner: Any, result: Any, context: Any) -> None:
    if not result.validation:
        raise AssertionError("no validation video was written")
    components_on_cpu(runner, result, context)


def paths(dry: bool) -> list[Check]:
    group = {"enable_group_offload": True, "gradient_checkpointing": True}
    return [
        Check("bf16 LoRA, small", {}, SMALL, 6),
        Check("bf16 LoRA, 768x512x49", {}, REAL, 6),
        Check("validation with sageattention", {"attention_mechanism": "sageattention", **VALIDATION}, SMALL, 2,
              cuda_only="SageAttention's kernels are CUDA only", check=validated),
        Check("flash kernel on self-attention", {"attention_mechanism": "_native_flash", **VALIDATION}, SMALL, 4,
              cuda_only="PyTorch's flash kernel is CUDA only", check=validated),
        Check("int8-torchao base", {"base_model_precision": "int8-torchao"}),
        Check("fp8-torchao base", {"base_model_precision": "fp8-torchao"}),
        Check("int8-quanto base", {"base_model_precision": "int8-quanto"}),
        Check("nf4-bnb base", {"base_model_precision": "nf4-bnb"}),
        Check("group offload, RAM, block", group, SMALL, 3),
        Check("group offload, disk, block", {**group, "group_offload_to_disk_path": "DISK"}, SMALL, 3),
        Check("group offload, RAM, int8-torchao", {**group, "base_model_precision": "int8-torchao"}, SMALL, 3),
        Check("model CPU offload", {"enable_model_cpu_offload": True, **VALIDATION}, SMALL, 2, check=validated),
        Check("regional compile", {"torch_compile": True}, SMALL, 6,
              cuda_only="compiling on the CPU takes minutes (tests/offload check it on the tiny model)"),
        Check("resume round trip", {}, SMALL, 4, kind="resume"),
        Check("refusals at configure time", {}, kind="refuse"),
    ]


class CachedData:
    """Hands the run cached samples (no VAE or text encoder in the step)."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples = samples

    from vtrain.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def build_dataset(self) -> Any:
        from vtrain_ltxvideo.synthetic import EncodedClipDataset

        return EncodedClipDataset(self.samples)


def samples_for(shape: tuple[int, int, int], dry: bool) -> list[dict[str, Any]]:
    from bench_ltxvideo_step import cached_samples

    frames, height, width = shape
    latent = ((frames - 1) // 8 + 1, height // 32, width // 32)
    return cached_samples(2, 8 if dry else 128, latent, 32 if dry else 4096, seed=0)


def base_config(model_dir: Path, out: Path, steps: int, dry: bool) -> dict[str, Any]:
    return {"model_family": "ltxvideo", "pretrained_model_name_or_path": str(model_dir), "output_dir": str(out),
            "max_train_steps": steps, "train_batch_size": 1, "learning_rate": 1e-4, "lora_rank": 16,
            "lora_target": "attention", "seed": 0, "max_grad_norm": 1.0, "gradient_checkpointing": True,
            "mixed_precision": "no" if dry else "bf16", "base_model_default_dtype": "fp32" if dry else "bf16",
            "disable_benchmark": True}


class BundleKeeper:
    """Keeps a reference to the run's bundle so a check can inspect it after the run."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context

    from vtrain.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def on_run_end(self, run: Any, result: Any) -> None:
        self.context["bundle"] = run.bundle


def run_once(config: dict[str, Any], samples: list[dict[str, Any]], context: dict[str, Any]) -> tuple[Any, Any]:
    from vtrain.runner import Runner

    runner = Runner.from_config(config, plugins=[CachedData(samples), BundleKeeper(context)], blocked=["example"])
    return runner, runner.run()


def losses_and_times(out: Path) -> tuple[list[float], list[float]]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [entry["loss"] for entry in lines], [entry["step_seconds"] for entry in lines]


def run_path(path: Check, model_dir: Path, work: Path, dry: bool) -> Row:
    import math


    out = work / path.name.replace(" ", "-").replace(",", "")
    steps = min(path.steps, 3) if dry else path.steps
    config = {**base_config(model_dir, out, steps, dry), **path.overrides}
    if config.get("group_offload_to_disk_path") == "DISK":
        config["group_offload_to_disk_path"] = str(work / "offload-disk")
    if dry and "validation_resolution" in config:
        config["validation_resolution"] = "64x64"
    samples = samples_for(DRY_SHAPE if dry else path.shape, dry)
    context: dict[str, Any] = {}
    if path.kind == "refuse":
        check_refusals(base_config(model_dir, out, 1, dry))
        return Row(path.name, "ok")
    if path.kind == "resume":
        return resume_round_trip(path, config, samples, out, dry)
    _runner, result = run_once(config, samples, context)
    losses, times = losses_and_times(out)
    if len(losses) != steps or not all(math.isfinite(v) for v in losses):
        raise AssertionError(f"losses {losses}")
    if path.check is not None:
        path.check(_runner, result, context)
    context.clear()
    return Row(path.name, "ok", statistics.median(times[1:] or times), None)


def resume_round_trip(path: Check, config: dict[str, Any], samples: list[dict[str, Any]], out: Path, dry: bool) -> Row:
    """Train 4 steps with a checkpoint at step 2; a second run resumes from that checkpoint into another
    folder and must repeat steps 3 and 4 (same batches and noise: the RNG state is restored)."""
    steps = config["max_train_steps"] = 4
    config["checkpoint_step_interval"] = 2
    context: dict[str, Any] = {}
    run_once(config, samples, context)
    first, times = losses_and_times(out)
    resumed_out = out.with_name(out.name + "-resumed")
    resumed_config = {**config, "output_dir": str(resumed_out),
                      "resume_from_checkpoint": str(out / "checkpoint-2")}
    _runner, result = run_once(resumed_config, samples, context)
    second, _ = losses_and_times(resumed_out)
    if result.resumed_from is None or result.steps != steps or len(second) != 2:
        raise AssertionError(f"resume did not continue from step 2: {result}")
    tolerance = 0.0 if dry else 2e-2  # CPU is bit-exact; CUDA kernels may add rounding differences
    for a, b in zip(first[2:], second):
        if abs(a - b) > tolerance * max(1.0, abs(a)):
            raise AssertionError(f"steps 3-4 differ after resume: {first[2:]} vs {second}")
    return Row(path.name, "ok", statistics.median(times[1:]), None)


def check_refusals(config: dict[str, Any]) -> None:
    """Combinations that cannot work stop at configure time, before any weight is loaded."""
    from vtrain.errors import ConfigError
    from vtrain.runner import Runner

    group = {"enable_group_offload": True, "gradient_checkpointing": True}
    cases = {
        "fp8dq-torchao base": ({"base_model_precision": "fp8dq-torchao"}, "no derivative"),
        "quanto with group offload": ({**group, "base_model_precision": "int8-quanto"}, "inner tensors"),
        "bnb with group offload": ({**group, "base_model_precision": "nf4-bnb"}, "inner tensors"),
    }  # group_offload_use_stream is accepted with a note (SimpleTuner's LTX-2 quick-start sets it) and runs without a stream
    for label, (overrides, needle) in cases.items():
        try:
            Runner.from_config({**config, **overrides}, blocked=["example"])
        except ConfigError as error:
            if needle not in str(error):
                raise AssertionError(f"{label}: refused for another reason: {error}") from None
            continue
        raise AssertionError(f"{label}: accepted, but it cannot work")


def make_model(dry: bool, model_dir: str | None) -> Path:
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    folder = Path(model_dir or tempfile.mkdtemp(prefix="gpu-check-")) / ("tiny" if dry else "full")
    if not (folder / "model_index.json").is_file():
        started = time.perf_counter()
        make_pipeline_folder(folder, size="tiny" if dry else "full", seed=0)
        print(f"wrote {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def print_table(rows: list[Row], device: str, seconds: float) -> None:
    width = max(len(r.path) for r in rows)
    print(f"\nvtrain GPU check on {device} ({seconds:.0f} s)")
    print(f"| {'path'.ljust(width)} | result | s/step | peak VRAM GiB |")
    print(f"|{'-' * (width + 2)}|--------|--------|---------------|")
    for r in rows:
        step = f"{r.s_per_step:.3f}" if r.s_per_step is not None else "-"
        peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "-"
        print(f"| {r.path.ljust(width)} | {r.result} | {step} | {peak} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="tiny model on the CPU; CUDA-only paths are skipped")
    parser.add_argument("--only", default="", help="comma-separated substrings of path names to run")
    parser.add_argument("--model-dir", default=None, help="folder for (and reuse of) the random-weight model")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds; later paths are reported as not run")
    args = parser.parse_args(argv)
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("no CUDA device: run with --dry for the CPU part", file=sys.stderr)
        return 2
    if args.dry:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.perf_counter()
    device = "CPU (dry run, tiny model)" if args.dry else torch.cuda.get_device_name()
    model_dir = make_model(args.dry, args.model_dir)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-runs-"))
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    rows: list[Row] = []
    for path in paths(args.dry):
        if wanted and not any(w in path.name for w in wanted):
            continue
        if args.dry and path.cuda_only:
            rows.append(Row(path.name, f"skipped ({path.cuda_only})"))
            continue
        if time.perf_counter() - started > args.budget:
            rows.append(Row(path.name, "FAIL (not run: time budget spent)"))
            continue
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        path_started = time.perf_counter()
        try:
            row = run_path(path, model_dir, work, args.dry)
        except Exception as error:  # one failing path must not hide the others
            traceback.print_exc()
            row = Row(path.name, f"FAIL ({type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''})")
        if torch.cuda.is_available():
            row.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        print(f"{path.name}: {row.result} in {time.perf_counter() - path_started:.0f} s", flush=True)
        rows.append(row)
        gc.collect()
    print_table(rows, device, time.perf_counter() - started)
    return 1 if any(r.result.startswith("FAIL") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
