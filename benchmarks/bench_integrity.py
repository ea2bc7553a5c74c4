"""What the integrity checks cost: reading a verified cache entry, and writing/verifying a checkpoint manifest.

Usage: ``python benchmarks/bench_integrity.py [--latent 128x16x16x24] [--checkpoint-mib 256]``

1. A cache entry the size of an LTX-Video latent (default: 121 frames at 768x512 -> 128x16x16x24
   bf16, 1.5 MiB) is read 200 times through ``CacheStore.read`` (header and CRC-32) and
   with a bare ``safetensors.torch.load`` of the same bytes; prints ms per read for both.
2. A checkpoint folder with one file of ``--checkpoint-mib`` MiB: seconds for ``write_manifest``
   and ``verify_checkpoint`` (both read every byte once), and the MiB/s that gives.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    import torch
    from safetensors.torch import load

    from vtrain.checkpoint import verify_checkpoint, write_manifest
    from vtrain.data.cache import CacheStore

    parser = argparse.ArgumentParser()
    parser.add_argument("--latent", default="128x16x16x24")
    parser.add_argument("--checkpoint-mib", type=int, default=256)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    shape = tuple(int(x) for x in args.latent.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        store = CacheStore(Path(tmp) / "cache")
        store.write("ab" * 20, {"latents": torch.randn(shape).to(torch.bfloat16)})
        path = store.path_of("ab" * 20)
        started = time.perf_counter()
        for _ in range(args.reads):
            store.read("ab" * 20)
        verified = (time.perf_counter() - started) / args.reads * 1000
        started = time.perf_counter()
        for _ in range(args.reads):
            load(path.read_bytes())
        bare = (time.perf_counter() - started) / args.reads * 1000
        folder = Path(tmp) / "checkpoint-1"
        folder.mkdir()
        (folder / "trainable.safetensors").write_bytes(torch.randn(args.checkpoint_mib << 18).numpy().tobytes())
        (folder / "state.json").write_text(json.dumps({"step": 1, "epoch": 0, "batch_in_epoch": 1, "world_size": 1,
                                                       "seed": 0}))
        started = time.perf_counter()
        write_manifest(folder)
        manifest = time.perf_counter() - started
        started = time.perf_counter()
        assert verify_checkpoint(folder) is None
        verify = time.perf_counter() - started
    print(f"cache entry {args.latent} bf16: verified read {verified:.2f} ms, bare load {bare:.2f} ms "
          f"(+{verified - bare:.2f} ms per sample)")
    print(f"checkpoint manifest of {args.checkpoint_mib} MiB: write {manifest:.2f} s, verify {verify:.2f} s "
          f"({args.checkpoint_mib / verify:.0f} MiB/s)")


if __name__ == "__main__":
    main()
