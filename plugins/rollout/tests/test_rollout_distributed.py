"""Rollout under two gloo ranks (tinyflow): the ranks roll out different numbers of steps (each its own RNG
stream, rollout forwards on the unwrapped model) and the DDP training keeps their weights identical."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from vtrain.testing.helpers import run_distributed

WEIGHTS = textwrap.dedent("""
    import hashlib, json
    from vtrain import hookimpl

    @hookimpl
    def on_step_end(run, step, logs):
        import torch.distributed as dist
        rank = dist.get_rank()
        with open(f"{run.output_dir}/rollout-rank{rank}.jsonl", "a") as handle:
            handle.write(json.dumps({"k": logs["rollout_mean_k"], "share": logs["rollout_fraction"]}) + "\\n")

    @hookimpl
    def on_run_end(run, result):
        import torch.distributed as dist
        digest = hashlib.sha256()
        for name, param in run.bundle.trainable_named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().cpu().numpy().tobytes())
        with open(f"{run.output_dir}/weights-rank{dist.get_rank()}.txt", "w") as handle:
            handle.write(digest.hexdigest())
""")


def test_two_ranks_roll_out_independently_and_stay_in_sync(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    config = {
        "model_family": "tinyflow", "output_dir": str(out), "max_train_steps": 4, "train_batch_size": 4,
        "learning_rate": 3e-3, "mixed_precision": "no", "base_model_default_dtype": "fp32", "lora_rank": 4,
        "seed": 3, "tinyflow_num_samples": 32, "scheduled_sampling_max_step_offset": 6,
        "scheduled_sampling_probability": 1.0, "scheduled_sampling_sampler": "dpm",
    }
    (tmp_path / "weights.py").write_text(WEIGHTS)
    proc = run_distributed(config, tmp_path, [tmp_path / "weights.py"], port=29541,
                           plugins=("vtrain.testing.plugin", "vtrain_rollout.plugin"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "weights-rank0.txt").read_text() == (out / "weights-rank1.txt").read_text()
    logged = [[json.loads(line) for line in (out / f"rollout-rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(logged[0]) == len(logged[1]) == 4
    assert logged[0] != logged[1]  # each rank drew its own rollout lengths
