"""CREPA's per-step overhead: the same LTX-Video LoRA run with and without the CREPA term.

Both runs use the tiny random LTX-Video model, the same synthetic clips (encoded once, cached in
memory), seed, LoRA and optimizer; the CREPA run adds the block capture, the VAE decode of the
clean latents, the frozen DINOv2 forward and the projection head. The encoder has random weights
with a real architecture (``--encoder small`` = ViT-S/14, ``giant`` = ViT-g/14) or a tiny one.
Prints one JSON line per run and the ratio (median step seconds after ``--warmup`` steps).

    python benchmarks/bench_crepa.py                                  # CPU, one thread, tiny encoder
    python benchmarks/bench_crepa.py --encoder small --image-size 224  # the light real encoder on CPU
    python benchmarks/bench_crepa.py --device cuda --encoder giant --image-size 518 --frames 49 \\
        --height 512 --width 768 --mixed-precision bf16               # the default encoder on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ENCODERS = {  # transformers Dinov2Config arguments
    "tiny": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2, "patch_size": 4},
    "small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "patch_size": 14},
    "giant": {"hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 24, "use_swiglu_ffn": True,
              "patch_size": 14},
}


def make_encoder(kind: str, folder: Path, device: str) -> Path:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    with torch.device(device):
        model = Dinov2Model(Dinov2Config(**ENCODERS[kind]))
    model.to(torch.bfloat16 if kind == "giant" else torch.float32).save_pretrained(folder)
    return folder


def step_seconds(args: argparse.Namespace, model_dir: Path, encoder_dir: Path, crepa: bool) -> list[float]:
    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    out = Path(tempfile.mkdtemp(prefix="bench-crepa-"))
    config = {
        "model_family": "ltxvideo", "pretrained_model_name_or_path": str(model_dir), "output_dir": str(out),
        "max_train_steps": args.steps, "train_batch_size": args.batch, "learning_rate": 1e-3, "lora_rank": 16,
        "lora_target": "attention+ffn", "seed": 0, "max_grad_norm": 1.0, "grad_clip_method": "norm",
        "mixed_precision": args.mixed_precision, "base_model_default_dtype": args.dtype,
        "crepa_enabled": crepa, "crepa_block_index": 1, "crepa_encoder": str(encoder_dir),
        "crepa_encoder_image_size": args.image_size, "crepa_frame_pooling": args.pooling,
    }
    data = SyntheticDataPlugin(count=args.batch * 2, frames=args.frames, height=args.height, width=args.width)
    Runner.from_config(config, plugins=[data], blocked=["example"]).run()
    return [json.loads(line)["step_seconds"] for line in (out / "metrics.jsonl").open()][args.warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the run uses cuda whenever it is available)")
    parser.add_argument("--encoder", choices=tuple(ENCODERS), default="tiny")
    parser.add_argument("--image-size", type=int, default=None, help="default: 16 tiny, 224 small, 518 giant")
    parser.add_argument("--pooling", choices=("mean", "middle"), default="mean")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default="no")
    args = parser.parse_args()
    args.image_size = args.image_size or {"tiny": 16, "small": 224, "giant": 518}[args.encoder]
    args.dtype = "bf16" if args.mixed_precision == "bf16" else "fp32"
    import torch

    from vtrain_ltxvideo.tiny import make_pipeline_folder

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-crepa-models-"))
    model_dir = make_pipeline_folder(tmp / "ltx", seed=0)
    encoder_dir = make_encoder(args.encoder, tmp / "dinov2", args.device)
    results: dict[str, float] = {}
    for label, crepa in (("without", False), ("with", True), ("without_again", False)):
        times = step_seconds(args, model_dir, encoder_dir, crepa)
        results[label] = statistics.median(times)
    baseline = min(results["without"], results["without_again"])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{args.threads} threads"
    print(json.dumps({"encoder": args.encoder, "image_size": args.image_size, "pooling": args.pooling,
                      "clip": f"{args.batch}x{args.frames}x{args.height}x{args.width}", "device": device,
                      "s_per_step_without": baseline, "s_per_step_with": results["with"],
                      "overhead_s": results["with"] - baseline, "ratio": results["with"] / baseline}))


if __name__ == "__main__":
    main()
