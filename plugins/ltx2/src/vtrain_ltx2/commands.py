"""``vtrain ltx2 ...`` sub-commands."""

from __future__ import annotations

import argparse


def run_ltx2_command(argv: list[str]) -> int:
    """``make-tiny DIR [--variant 2.0|2.3] [--size tiny|full] [--seed N]``: write a random LTX-2 pipeline."""
    parser = argparse.ArgumentParser(prog="vtrain ltx2", description="LTX-2 family tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("make-tiny", help="write a random-initialised LTX-2 pipeline folder (no download)")
    tiny.add_argument("directory", help="folder to write (a diffusers LTX2Pipeline layout)")
    tiny.add_argument("--variant", choices=("2.0", "2.3"), default="2.0",
                      help="2.0: the LTX-2 layout; 2.3: LTX-2.3/2.5 (gated attention, per-modality connector "
                           "projections, bandwidth-extension vocoder)")
    tiny.add_argument("--size", choices=("tiny", "full"), default="tiny",
                      help="tiny: a few MB for CPU tests; full: the published 19B architecture as config files, "
                           "built on the meta device, for the GPU benchmark (benchmarks/ltx2_step.py)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    from vtrain_ltx2.tiny import make_pipeline_folder

    path = make_pipeline_folder(args.directory, variant=args.variant, size=args.size, seed=args.seed)
    if args.size == "full":
        print(f"wrote the full LTX-2 architecture's configs (no weights) to {path}")
        print(f"benchmark it on a GPU with: python benchmarks/ltx2_step.py --size full --device cuda --model {path}")
        return 0
    print(f"wrote a random-initialised tiny LTX-{args.variant} pipeline to {path}")
    print(f'use it with: "model_family": "ltx2", "pretrained_model_name_or_path": "{path}"')
    return 0
