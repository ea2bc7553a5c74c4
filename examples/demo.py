"""The demo behind `make demo`: tiny LTX-Video LoRA training on CPU, start to finish.

1. makes the tiny random-initialised LTX-Video model and a folder of captioned clips of moving
   coloured shapes (if absent; `examples/ltxvideo/make_demo_data.py`);
2. trains a LoRA with `examples/ltxvideo/demo_config.json` through the real data layer
   (decoding, buckets, latent and text-embedding caches), validating along the way;
3. prints where the LoRA and the validation videos are.

Run from the repository root: `python examples/demo.py` (or `make demo`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.chdir(ROOT)  # the demo config's paths are relative to the repository root
    sys.path.insert(0, str(ROOT / "examples" / "ltxvideo"))
    from make_demo_data import main as make_demo_data

    from vtrain import Runner
    from vtrain.errors import VtrainError

    make_demo_data(["--root", "demo"])
    config = ROOT / "examples" / "ltxvideo" / "demo_config.json"
    output = ROOT / "demo" / "output" / "ltxvideo"
    if output.exists():
        shutil.rmtree(output)  # a fresh run every time; the caches under demo/cache are reused
    try:
        result = Runner.from_config(config).run()
    except VtrainError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    videos = sorted(p for p in result.validation if p.suffix == ".mp4")
    print(f"\ndemo finished: {result.steps} updates in {result.seconds:.0f} s, final loss {result.final_loss:.4f}")
    for path in result.model_paths:
        print(f"  LoRA:   {path}")
    if videos:
        print(f"  videos: {len(videos)} mp4 files, the last under {videos[-1].parent}")
    print(f"  load it: LTXPipeline.from_pretrained('demo/tiny-ltx-video').load_lora_weights('{output}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
