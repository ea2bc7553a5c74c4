"""TREAD's speed-up: the same LTX-Video LoRA run with and without token routing (``tread_config``).

The model is LTX-Video's architecture at a small but not trivial size (by default 8 blocks of width
128, random weights; the tiny test VAE and text encoder), trained on synthetic clips large enough that
the blocks dominate a step (33 frames at 256x384: 5x8x12 = 480 tokens). Both runs use the same clips,
LoRA and optimizer; routed steps use ``tread_config`` (default: SimpleTuner's recommended route, half
the tokens skip blocks 2..-2). The model is prepared once through the run's hooks; plain and routed
training steps (loss, backward, AdamW update) then alternate on it, so load from other processes hits
both alike. Prints one JSON line: the median seconds of each, the speed-up and ``tread_token_share``.

    python benchmarks/bench_tread.py                         # CPU, one torch thread
    python benchmarks/bench_tread.py --ratio 0.25
    python benchmarks/bench_tread.py --device cuda --layers 28 --heads 32 --head-dim 64 \\
        --frames 49 --height 512 --width 768 --dtype bf16 --mixed-precision bf16   # LTX-Video 2B size on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_model(folder: Path, args: argparse.Namespace) -> Path:
    """The tiny LTX-Video pipeline folder with its transformer replaced by one of the requested size."""
    import torch
    from diffusers import LTXVideoTransformer3DModel

    from vtrain_ltxvideo.tiny import make_pipeline_folder

    make_pipeline_folder(folder, seed=0)
    width = args.heads * args.head_dim
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, num_attention_heads=args.heads, attention_head_dim=args.head_dim,
        cross_attention_dim=width, num_layers=args.layers, caption_channels=32)
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    return folder


def prepare(args: argparse.Namespace, model_dir: Path, tread: dict) -> tuple[Any, Any, list[dict], Any]:
    """(runner, bundle, batches, optimizer): the model loaded and prepared through the run's own hooks
    (the plugin's routing hooks included), the synthetic clips encoded once."""
    import torch

    from vtrain.data.base import collate
    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    config = {
        "model_family": "ltxvideo", "pretrained_model_name_or_path": str(model_dir),
        "output_dir": tempfile.mkdtemp(prefix="bench-tread-"), "train_batch_size": args.batch, "lora_rank": 16,
        "lora_target": "attention+ffn", "seed": 0, "mixed_precision": args.mixed_precision,
        "base_model_default_dtype": args.dtype, "gradient_checkpointing": args.gradient_checkpointing,
        "tread_config": tread, "max_train_steps": 1,
    }
    runner = Runner.from_config(config, blocked=["example"])
    bundle = runner.hooks.load_model(config=runner.config, family=runner.family)
    runner.hooks.prepare_model(bundle, runner.config, torch.device(args.device))
    dataset = SyntheticDataPlugin(count=args.batch * 2, frames=args.frames, height=args.height,
                                  width=args.width).build_dataset(bundle=bundle, config=runner.config,
                                                                  family=runner.family)
    device = torch.device(args.device)
    batches = []
    for start in range(0, len(dataset), args.batch):
        batch = collate([dataset[i] for i in range(start, start + args.batch)])
        batches.append({k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()})
    params = [p for _, p in bundle.trainable_named_parameters()]
    return runner, bundle, batches, torch.optim.AdamW(params, lr=1e-4)


def alternate(args: argparse.Namespace, runner: Any, bundle: Any, batches: list[dict], optimizer: Any
              ) -> dict[str, list[float]]:
    """Seconds per training step, plain and routed steps alternating on the same model and batches.

    A routed step calls the ``compute_loss`` hook (the plugin's wrapper routes the forward); a plain step
    calls the family's own ``compute_loss``, which the plugin's hooks leave unrouted."""
    import time

    import torch

    from vtrain.family import TrainState

    state = TrainState(shift_for=lambda shape: None)
    bundle.model.train()
    times: dict[str, list[float]] = {"plain": [], "routed": []}
    shares = []
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    autocast = (lambda: torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16)) \
        if args.mixed_precision == "bf16" else contextlib.nullcontext
    for step in range(args.warmup + args.steps):
        for name in ("plain", "routed") if step % 2 == 0 else ("routed", "plain"):
            batch = batches[step % len(batches)]
            sync()
            begin = time.perf_counter()
            with autocast():
                if name == "routed":
                    out = runner.hooks.compute_loss(bundle=bundle, batch=batch, config=runner.config, state=state)
                    shares.append(out.metrics.get("tread_token_share"))
                else:
                    out = runner.family.compute_loss(bundle, batch, runner.config, state)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            if step >= args.warmup:
                times[name].append(time.perf_counter() - begin)
    times["share"] = shares[-1:]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=0.5, help="selection_ratio: the share of tokens that skip")
    parser.add_argument("--start", type=int, default=2, help="start_layer_idx")
    parser.add_argument("--end", type=int, default=-2, help="end_layer_idx")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()

    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    tread = {"routes": [{"selection_ratio": args.ratio, "start_layer_idx": args.start, "end_layer_idx": args.end}]}
    model_dir = make_model(Path(tempfile.mkdtemp(prefix="bench-tread-model-")) / "ltx", args)
    tokens = (1 + (args.frames - 1) // 8) * (args.height // 32) * (args.width // 32)
    times = alternate(args, *prepare(args, model_dir, tread))
    plain, routed = statistics.median(times["plain"]), statistics.median(times["routed"])
    print(json.dumps({"plain_s": round(plain, 4), "routed_s": round(routed, 4), "speedup": round(plain / routed, 3),
                      "tread_token_share": times["share"][0], "tokens": tokens, "blocks": args.layers,
                      "width": args.heads * args.head_dim, "batch": args.batch, "steps_each": args.steps,
                      "gradient_checkpointing": args.gradient_checkpointing, "tread_config": tread,
                      "device": args.device, "threads": args.threads}))

if __name__ == "__main__":
    main()
