"""Peak memory per rank of a full fine-tune under DDP, FSDP2, and FSDP2 with rank-0 loading.

Each mode is one ``vtrain run`` under ``torchrun --nproc_per_node N`` (gloo on CPU, NCCL on GPUs) from
the same saved model folder. A plugin file records, on every rank, above the RSS right after the imports:
the RSS at the end of each update (the most is reported), the lifetime peak (``ru_maxrss``), the bytes of
the training state this rank holds (local parameter shards + optimizer state, measured on the tensors),
and on CUDA the peak allocated VRAM.

    python benchmarks/bench_fsdp_memory.py                      # tinyflow, width 1024, depth 8, CPU, 2 ranks
    python benchmarks/bench_fsdp_memory.py --model ltx-2b --nproc 8   # real LTX-Video 2B architecture, GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RECORDER = textwrap.dedent("""
    import json, resource
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from vtrain import hookimpl

    def rss_mib():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / 2**20

    seen = {"baseline": rss_mib(), "steps": []}  # after torch and vtrain are imported, before any model
    # every optimizer step reports its optimizer: the one whose state this rank holds
    register_optimizer_step_post_hook(lambda optimizer, args, kwargs: seen.update(opt=optimizer))

    @hookimpl
    def on_run_start(run):  # the model is loaded and sharded, the optimizer built: the loading peak
        seen["loading"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    @hookimpl
    def on_step_end(run, step):
        seen["steps"].append(rss_mib())

    @hookimpl
    def on_run_end(run, result):
        from torch.distributed.tensor import DTensor

        def local_bytes(t):
            t = t.to_local() if isinstance(t, DTensor) else t
            return t.numel() * t.element_size()

        state = sum(local_bytes(p) for _, p in run.bundle.trainable_named_parameters())
        state += sum(local_bytes(v) for s in seen["opt"].state.values() for v in s.values()
                     if torch.is_tensor(v) and v.dim() > 0)
        rank = run.accelerator.process_index
        record = {"rank": rank, "baseline_mib": seen["baseline"], "loading_peak_mib": seen["loading"] - seen["baseline"],
                  "training_rss_mib": max(seen["steps"]) - seen["baseline"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - seen["baseline"],
                  "state_mib": state / 2**20}
        if torch.cuda.is_available():
            record["peak_vram_gib"] = torch.cuda.max_memory_allocated() / 2**30
        with open(f"{run.output_dir}/memory-rank{rank}.json", "w") as handle:
            json.dump(record, handle)
""")

MODES = {
    "ddp": {},
    "fsdp2": {"fsdp_enable": True},
    "fsdp2+rank0-loading": {"fsdp_enable": True, "fsdp_cpu_ram_efficient_loading": True},
}


def model_config(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], list[str], list[Path]]:
    """The base config, plugin modules and plugin files of one model choice (its weights saved under ``folder``)."""
    if args.model == "tinyflow":
        import torch

        from vtrain.testing.tinyflow_model import TinyFlowModel

        torch.manual_seed(0)
        TinyFlowModel(channels=4, width=args.width, depth=args.depth, num_classes=4).save_pretrained(folder / "model")
        config = {"model_family": "tinyflow", "pretrained_model_name_or_path": str(folder / "model"),
                  "mixed_precision": "no", "base_model_default_dtype": "fp32", "tinyflow_num_samples": 16}
        return config, ["vtrain.testing.plugin"], []
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    model_dir = make_pipeline_folder(folder / "ltx-2b", size="full", seed=0)
    data = folder / "data.py"
    data.write_text("from vtrain_ltxvideo.synthetic import SyntheticDataPlugin\n"
                    "build_dataset = SyntheticDataPlugin(count=16, frames=49, height=512, width=768).build_dataset\n")
    config = {"model_family": "ltxvideo", "pretrained_model_name_or_path": str(model_dir), "mixed_precision": "bf16",
              "base_model_default_dtype": "bf16", "gradient_checkpointing": True}
    return config, ["vtrain_ltxvideo.plugin"], [data]


def run_mode(name: str, base: dict[str, Any], plugins: list[str], files: list[Path], folder: Path,
             nproc: int, port: int) -> list[dict[str, Any]]:
    out = folder / name
    config = {**base, **MODES[name], "output_dir": str(out), "model_type": "full", "max_train_steps": 3,
              "train_batch_size": 1, "learning_rate": 1e-5, "grad_clip_method": "norm", "seed": 0}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(port),
           "-m", "vtrain", "run", "--config", str(path)]
    for plugin in plugins:
        cmd += ["-p", plugin]
    for file in [*files, folder / "recorder.py"]:
        cmd += ["--plugin-file", str(file)]
    # tensors of 64 KiB and more are mmap-ed and unmapped when freed, so RSS follows the live tensors
    # instead of what glibc's heap keeps after a free
    env = {**os.environ, "VTRAIN_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1",
           "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=folder)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return [json.loads((out / f"memory-rank{r}.json").read_text()) for r in range(nproc)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tinyflow", "ltx-2b"), default="tinyflow")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "recorder.py").write_text(RECORDER)
        base, plugins, files = model_config(args, folder)
        rows = {}
        for index, name in enumerate(MODES):
            rows[name] = run_mode(name, base, plugins, files, folder, args.nproc, 29700 + index)
            print(json.dumps({"mode": name, "ranks": rows[name]}), flush=True)
    vram = "peak_vram_gib" in rows["ddp"][0]
    print("\n| mode | rank | training state held (MiB) | peak RSS while loading (MiB) | RSS while training (MiB) | "
          "peak RSS of the run (MiB) |" + (" peak VRAM (GiB) |" if vram else ""))
    print("|---|---|---|---|---|---|" + ("---|" if vram else ""))
    for name, ranks in rows.items():
        for record in ranks:
            extra = f" {record['peak_vram_gib']:.2f} |" if vram else ""
            print(f"| {name} | {record['rank']} | {record['state_mib']:.1f} | {record['loading_peak_mib']:.0f} | "
                  f"{record['training_rss_mib']:.0f} | "
                  f"{record['peak_rss_mib']:.0f} |{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
