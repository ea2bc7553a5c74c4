"""``vtrain ltxvideo ...`` sub-commands."""

from __future__ import annotations

import argparse


def run_ltxvideo_command(argv: list[str]) -> int:
    """``make-tiny DIR [--size tiny|full] [--seed N] [--latent-channels C]``: write a random LTX-Video pipeline."""
    parser = argparse.ArgumentParser(prog="vtrain ltxvideo", description="LTX-Video family tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("make-tiny", help="write a random-initialised LTX-Video pipeline folder (no download)")
    tiny.add_argument("directory", help="folder to write (a diffusers LTXPipeline layout)")
    tiny.add_argument("--size", choices=("tiny", "full"), default="tiny",
                      help="tiny: <1 MB, for CPU tests and the demo; full: the real 2B transformer and VAE "
                           "architecture with random weights, for GPU speed/memory measurements")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.add_argument("--latent-channels", type=int, default=8, help="latent channels of the tiny VAE (real: 128)")
    args = parser.parse_args(argv)
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    path = make_pipeline_folder(args.directory, size=args.size, seed=args.seed, latent_channels=args.latent_channels)
    print(f"wrote a random-initialised {args.size} LTX-Video pipeline to {path}")
    print(f'use it with: "model_family": "ltxvideo", "pretrained_model_name_or_path": "{path}"')
    return 0
