"""Cache building split across two real gloo ranks (torchrun), then training on the shared caches."""

from __future__ import annotations

import textwrap
from pathlib import Path

from data.conftest import image_backend, text_backend, video_backend, write_backends

from vtrain.testing.helpers import run_distributed

COUNTER = textwrap.dedent("""
    import json
    from vtrain import hookimpl

    @hookimpl(wrapper=True)
    def encode_batch(bundle, batch, config):
        import torch.distributed as dist
        rank = dist.get_rank() if dist.is_initialized() else 0
        if "pixels" in batch:
            with open(f"{config.output_dir}/encoded-rank{rank}.txt", "a") as handle:
                handle.write(f"{batch['pixels'].shape[0]}\\n")
        return (yield)
""")


def test_two_ranks_share_the_cache_build(media: Path, tmp_path: Path) -> None:
    backends = write_backends(tmp_path / "backends.json",
                              [video_backend(media, tmp_path), image_backend(media, tmp_path), text_backend(tmp_path)])
    out = tmp_path / "out"
    out.mkdir()
    config = {"model_family": "tinyflow", "output_dir": str(out), "data_backend_config": str(backends),
              "max_train_steps": 2, "train_batch_size": 1, "mixed_precision": "no", "vae_batch_size": 1,
              "base_model_default_dtype": "fp32", "seed": 5}
    (tmp_path / "counter.py").write_text(COUNTER)
    proc = run_distributed(config, tmp_path, [tmp_path / "counter.py"], port=29523)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = [sum(int(n) for n in (out / f"encoded-rank{r}.txt").read_text().split()) for r in (0, 1)]
    assert counts[0] > 0 and counts[1] > 0, f"one rank encoded nothing: {counts}"
    cached = list((tmp_path / "cache" / "vae").rglob("*.safetensors*"))
    assert sum(counts) == len(cached), (counts, len(cached))  # each entry encoded exactly once, by one rank
