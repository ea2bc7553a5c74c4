"""The demo behind `make demo`: teach a tiny LTX-Video a colour it has never seen, on CPU.

1. writes 16 captioned clips of a blue square moving left or right (if absent;
   `examples/ltxvideo/make_demo_data.py`);
2. trains a LoRA on them with `examples/ltxvideo/demo_config.json` through the real data layer
   (decoding, buckets, latent and text-embedding caches) on the base model in
   `examples/ltxvideo/demo-base` (a tiny LTX-Video trained on red and green squares only, by
   `examples/ltxvideo/train_demo_base.py`): asked for "a blue square", such a base draws a square
   of the wrong colour (green). Should that folder be missing, the demo says so and trains on a
   random-initialised tiny LTX-Video instead, whose videos are noise;
3. writes `before-after.gif` (the step-0 and final validation videos side by side) and `loss.png`
   beside the LoRA, and prints their paths and how much of each video is blue.

Run from the repository root: `python examples/demo.py` (or `make demo`); `--verbose` also shows
what other libraries print while they are imported.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # nothing downloads; no "Loading weights" bars
ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "examples" / "ltxvideo" / "demo-base"


def run_overrides(root: Path) -> dict[str, object]:
    """The demo config's data, caches and output moved from ``demo/`` to ``root`` (tests use their own folder)."""
    import json

    text = (ROOT / "examples" / "ltxvideo" / "demo_multidatabackend.json").read_text(encoding="utf-8")
    return {"data_backend_config": json.loads(text.replace('"demo/', json.dumps(str(root))[:-1] + "/")),
            "output_dir": str(root / "output" / "ltxvideo")}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Teach a tiny LTX-Video a new colour with a LoRA, on CPU.")
    parser.add_argument("--verbose", action="store_true", help="also show other libraries' import-time output")
    parser.add_argument("--root", type=Path, default=None, help="folder for clips, caches and output (default demo/)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.verbose:
        os.environ["VTRAIN_VERBOSE"] = "1"
    os.chdir(ROOT)  # the demo config's paths are relative to the repository root
    root = (args.root or Path("demo")).resolve()
    from vtrain.quiet import import_quietly

    import_quietly()
    sys.path.insert(0, str(ROOT / "examples" / "ltxvideo"))
    from demo_report import NEW_COLOUR, report
    from make_demo_data import main as make_demo_data

    from vtrain import Runner
    from vtrain.errors import VtrainError

    make_demo_data(["--root", str(root)])
    config = ROOT / "examples" / "ltxvideo" / "demo_config.json"
    overrides: dict[str, object] = run_overrides(root) if args.root is not None else {}
    base = BASE
    if not (BASE / "model_index.json").is_file():
        from vtrain_ltxvideo.tiny import make_pipeline_folder

        base = root / "tiny-ltx-video"
        if not (base / "model_index.json").is_file():
            make_pipeline_folder(base)
        overrides["pretrained_model_name_or_path"] = str(base)
        print(f"demo: note: no trained base model at {BASE.relative_to(ROOT)} (build it with "
              "python examples/ltxvideo/train_demo_base.py); training on a random-initialised tiny "
              "LTX-Video instead, whose videos are noise before and after")
    output = root / "output" / "ltxvideo"
    if output.exists():
        shutil.rmtree(output)  # a fresh run every time; the caches under demo/cache are reused
    try:
        result = Runner.from_config(config, overrides=overrides).run()
    except VtrainError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    shown = report(result.output_dir, result.steps)
    print(f"\ndemo finished: {result.steps} updates in {result.seconds:.0f} s, final loss {result.final_loss:.4f}")
    print(f"  {NEW_COLOUR} pixels in the validation video: {100 * shown['before']:.1f}% before training, "
          f"{100 * shown['after']:.1f}% after (the square covers 6.3% of the frame)")
    print(f"  before/after: {shown['gif']}")
    print(f"  loss curve:   {shown['loss_png']}")
    for path in result.model_paths:
        print(f"  LoRA:         {path}")
    shown_output = output.relative_to(ROOT) if output.is_relative_to(ROOT) else output
    shown_base = base.relative_to(ROOT) if base.is_relative_to(ROOT) else base
    print(f"  load it:      LTXPipeline.from_pretrained('{shown_base}')"
          f".load_lora_weights('{shown_output}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
