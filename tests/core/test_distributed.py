"""Two gloo ranks on CPU (torchrun): identical weights, different samples, rank 0 writes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from vtrain.testing.helpers import run_distributed

RECORDER = textwrap.dedent("""
    import hashlib, json
    from vtrain import hookimpl

    @hookimpl(wrapper=True)
    def compute_loss(bundle, batch, config, state):
        import torch.distributed as dist
        rank = dist.get_rank() if dist.is_initialized() else 0
        with open(f"{config.output_dir}/seen-rank{rank}.jsonl", "a") as handle:
            handle.write(json.dumps({"step": state.step, "ids": list(batch["id"])}) + "\\n")
        return (yield)

    @hookimpl
    def on_run_end(run, result):
        import torch.distributed as dist
        rank = dist.get_rank() if dist.is_initialized() else 0
        digest = hashlib.sha256()
        for name, param in run.bundle.trainable_named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().cpu().numpy().tobytes())
        with open(f"{run.output_dir}/weights-rank{rank}.txt", "w") as handle:
            handle.write(digest.hexdigest())
""")


def test_two_gloo_ranks_train_identically_on_different_samples(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    config = {
        "model_family": "tinyflow", "output_dir": str(out), "max_train_steps": 4, "train_batch_size": 2,
        "learning_rate": 3e-3, "mixed_precision": "no", "base_model_default_dtype": "fp32", "lora_rank": 4,
        "seed": 3, "tinyflow_num_samples": 32, "checkpoint_step_interval": 2,
    }
    (tmp_path / "recorder.py").write_text(RECORDER)
    proc = run_distributed(config, tmp_path, [tmp_path / "recorder.py"], port=29517)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "weights-rank0.txt").read_text() == (out / "weights-rank1.txt").read_text()
    seen = [[json.loads(line) for line in (out / f"seen-rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 4
    for a, b in zip(*seen):
        assert not set(a["ids"]) & set(b["ids"]), "ranks saw the same samples"
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (out / "checkpoint-4" / "rng-rank1.pt").is_file()
    assert proc.stdout.count("vtrain run") == 1  # only rank 0 prints the summary
