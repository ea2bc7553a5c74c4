"""Cache-building throughput against a minimal decode + encode loop, and peak memory by clip length.

Usage: ``python benchmarks/bench_cache.py [--clips 12] [--frames 33] [--size 256x192]``

1. Throughput: the same generated clips are (a) decoded with decord, resized and encoded in a
   bare loop, and (b) cached by vtrain's data layer (scan, hash, probe, decode, encode, atomic
   writes). Both use the tinyflow encoder, so the difference is the data layer's overhead.
   Prints clips/s, frames/s and the ratio vtrain / minimal (target >= 0.9).
2. Memory: one process caches a long clip, another a short clip, at the same ``num_frames``;
   prints each process's peak RSS (it must not grow with the clip's length).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _encoder():  # type: ignore[no-untyped-def]
    from vtrain.config import ResolvedConfig
    from vtrain.testing.tinyflow import TinyFlowFamily

    family = TinyFlowFamily()
    config = ResolvedConfig(values={"tinyflow_classes": 4})
    return family, (lambda batch: family.encode_batch(None, batch, config))  # type: ignore[arg-type]


def _backends(folder: Path, cache: Path, frames: int, resolution: int) -> list[dict]:
    return [
        {"id": "bench", "type": "local", "dataset_type": "video", "instance_data_dir": str(folder),
         "cache_dir_vae": str(cache / "vae"), "resolution": resolution, "resolution_type": "pixel_area",
         "caption_strategy": "filename", "repeats": 1, "video": {"num_frames": frames, "min_frames": frames}},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "cache_dir": str(cache / "text")},
    ]


def _build(folder: Path, cache: Path, frames: int, resolution: int) -> float:
    from vtrain.config import ResolvedConfig
    from vtrain.data.build import DataContext, build_datasets

    family, encode = _encoder()
    config = ResolvedConfig(values={"data_backend_config": _backends(folder, cache, frames, resolution),
                                    "vae_batch_size": 1, "train_batch_size": 1, "tinyflow_classes": 4, "seed": 0})
    ctx = DataContext(encode=encode, family="tinyflow", traits=family.traits, say=lambda m: None, show_progress=False)
    started = time.perf_counter()
    build_datasets(config, ctx)
    return time.perf_counter() - started


def _minimal(clips: list[Path], frames: int, size: tuple[int, int]) -> float:
    import decord
    import torch

    _, encode = _encoder()
    started = time.perf_counter()
    for path in clips:
        reader = decord.VideoReader(str(path), num_threads=1)
        pixels = torch.from_numpy(reader.get_batch(list(range(frames))).asnumpy()).permute(0, 3, 1, 2).float() / 255
        pixels = torch.nn.functional.interpolate(pixels, size=(size[1], size[0]), mode="bilinear", antialias=True)
        with torch.no_grad():
            encode({"pixels": pixels[None]})
    return time.perf_counter() - started


def throughput(args: argparse.Namespace, work: Path) -> dict:
    from vtrain.data.geometry import plan_geometry
    from vtrain.data.spec import parse_backends
    from vtrain.data.synthetic_media import write_clip
    from vtrain.testing.tinyflow import TinyFlowFamily

    width, height = map(int, args.size.split("x"))
    folder = work / "clips"
    clips = [write_clip(folder / f"clip_{i:03d}.mp4", width, height, args.frames + 8, seed=i) for i in range(args.clips)]
    backend = parse_backends(_backends(folder, work / "probe", args.frames, args.resolution), None).media[0]
    size = plan_geometry(width, height, args.frames, backend, TinyFlowFamily.traits.spatial_alignment, "x").size
    _minimal(clips[:1], args.frames, size)  # warm up decord and torch
    rounds = []
    for attempt in range(args.rounds):
        minimal = _minimal(clips, args.frames, size)
        vtrain = _build(folder, work / f"cache{attempt}", args.frames, args.resolution)
        rounds.append((minimal, vtrain))
    minimal, vtrain = min(r[0] for r in rounds), min(r[1] for r in rounds)
    cached = _build(folder, work / "cache0", args.frames, args.resolution)  # a second start: all cached
    return {
        "clips": args.clips, "frames_per_clip": args.frames, "source": args.size, "trained_size": f"{size[0]}x{size[1]}",
        "minimal_clips_per_s": args.clips / minimal, "minimal_frames_per_s": args.clips * args.frames / minimal,
        "vtrain_clips_per_s": args.clips / vtrain, "vtrain_frames_per_s": args.clips * args.frames / vtrain,
        "ratio_vtrain_over_minimal": minimal / vtrain, "restart_all_cached_s": cached,
    }


def _child_peak(clip: Path, frames: int, resolution: int, work: Path) -> tuple[int, int]:
    """(peak RSS after imports, peak RSS after caching the clip) of a fresh process, in KiB."""
    code = ("import resource, sys; sys.path.insert(0, %r); import bench_cache as b; from pathlib import Path; "  # noqa: UP031
            "import torch, decord, av, vtrain.data.build, vtrain.testing.tinyflow; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "b._build(Path(%r), Path(%r), %d, %d); "
            "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)") % (
        str(Path(__file__).parent), str(clip.parent), str(work), frames, resolution)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.strip().splitlines()[-1].split())
    return before, after


def memory(args: argparse.Namespace, work: Path) -> dict:
    from vtrain.data.synthetic_media import write_clip

    width, height = map(int, args.mem_size.split("x"))
    result: dict = {"source": args.mem_size, "num_frames": args.frames}
    for name, length in (("short", args.frames + 2), ("long", args.long_frames)):
        clip = write_clip(work / name / f"{name}.mp4", width, height, length, seed=3)
        before, after = _child_peak(clip, args.frames, args.mem_resolution, work / f"mem-{name}")
        result[f"{name}_clip_frames"] = length
        result[f"{name}_peak_rss_mib"] = after / 1024
        result[f"{name}_growth_over_imports_mib"] = (after - before) / 1024
    result["long_over_short_rss"] = result["long_peak_rss_mib"] / result["short_peak_rss_mib"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--frames", type=int, default=33, help="num_frames (4k+1 for the tinyflow encoder)")
    parser.add_argument("--size", default="256x192", help="source clip size WxH")
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--long-frames", type=int, default=1200)
    parser.add_argument("--mem-size", default="640x360", help="clip size WxH of the memory comparison")
    parser.add_argument("--mem-resolution", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = {"throughput": throughput(args, work), "memory": memory(args, work)}
    print(json.dumps(report, indent=2))
    ratio = report["throughput"]["ratio_vtrain_over_minimal"]
    print(f"cache building: {report['throughput']['vtrain_clips_per_s']:.2f} clips/s, "
          f"{report['throughput']['vtrain_frames_per_s']:.0f} frames/s; minimal loop "
          f"{report['throughput']['minimal_frames_per_s']:.0f} frames/s; ratio {ratio:.2f} (target >= 0.9)")
    mem = report["memory"]
    print(f"peak RSS at num_frames {args.frames}: short clip {mem['short_peak_rss_mib']:.0f} MiB "
          f"(+{mem['short_growth_over_imports_mib']:.0f} over imports), long clip ({args.long_frames} frames) "
          f"{mem['long_peak_rss_mib']:.0f} MiB (+{mem['long_growth_over_imports_mib']:.0f})")


if __name__ == "__main__":
    main()
