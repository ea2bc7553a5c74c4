"""Create what the LTX-Video CPU demo needs, if absent: the tiny model and a captioned clip folder.

    python examples/ltxvideo/make_demo_data.py [--root demo] [--clips 16]

Writes ``<root>/tiny-ltx-video`` (a random-initialised LTX-Video pipeline folder, the same layout
as ``Lightricks/LTX-Video-0.9.5``) and ``<root>/moving-shapes/clip-NNN.mp4`` with a ``.txt``
caption beside each (``caption_strategy=textfile``). Then train with
``vtrain run --config examples/ltxvideo/demo_config.json``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_clips(folder: Path, count: int, frames: int, height: int, width: int, fps: int) -> list[Path]:
    import numpy as np
    from diffusers.utils import export_to_video

    from vtrain_ltxvideo.synthetic import clip_specs, render_clip

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, spec in enumerate(clip_specs(count)):
        video = render_clip(spec, frames, height, width).permute(0, 2, 3, 1).numpy().astype(np.float32)
        path = folder / f"clip-{index:03d}.mp4"
        export_to_video(list(video), str(path), fps=fps)
        path.with_suffix(".txt").write_text(spec.caption + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="demo", help="folder for the model and the clips")
    parser.add_argument("--clips", type=int, default=16, help="number of clips")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip (8k+1 for LTX-Video)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    model = root / "tiny-ltx-video"
    if not (model / "model_index.json").is_file():
        from vtrain_ltxvideo.tiny import make_pipeline_folder

        make_pipeline_folder(model)
        print(f"wrote the tiny LTX-Video model to {model}")
    clips = root / "moving-shapes"
    if not any(clips.glob("*.mp4")):
        made = make_clips(clips, args.clips, args.frames, 64, 96, fps=25)
        print(f"wrote {len(made)} captioned clips to {clips}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
