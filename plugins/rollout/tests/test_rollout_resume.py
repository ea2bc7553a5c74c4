"""Rollout + image-to-video + CREPA + EMA (+ gradient accumulation and a probability ramp) on the tiny
LTX-Video model: the run trains, a run killed with SIGKILL and resumed ends bit-identical to an
uninterrupted one (the rollout draws from the checkpointed RNG streams), and the LoRA loads in LTXPipeline."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

PLUGINS = textwrap.dedent("""
    import os, signal
    from vtrain import hookimpl
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    KILL_AT = int(os.environ.get("KILL_AT_STEP", "0"))
    _data = SyntheticDataPlugin(count=4, frames=9)

    @hookimpl
    def build_dataset(bundle, config, family):
        return _data.build_dataset(bundle=bundle, config=config, family=family)

    @hookimpl
    def on_step_end(run, step, logs):
        if step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
""")


def _config(model_dir: Path, dinov2: Path, output_dir: Path) -> dict[str, Any]:
    return {
        "model_family": "ltxvideo", "pretrained_model_name_or_path": str(model_dir), "output_dir": str(output_dir),
        "max_train_steps": 6, "train_batch_size": 2, "gradient_accumulation_steps": 2, "learning_rate": 2e-3,
        "mixed_precision": "no", "base_model_default_dtype": "fp32", "lora_rank": 8, "lora_target": "attention+ffn",
        "seed": 5, "max_grad_norm": 1.0, "grad_clip_method": "norm", "checkpoint_step_interval": 2,
        "i2v_conditioning_probability": 0.7,
        "scheduled_sampling_max_step_offset": 3, "scheduled_sampling_ramp_steps": 3,
        "scheduled_sampling_prob_start": 0.25, "scheduled_sampling_prob_end": 1.0, "scheduled_sampling_sampler": "unipc",
        "crepa_enabled": True, "crepa_block_index": 1, "crepa_encoder": str(dinov2), "crepa_encoder_image_size": 16,
        "use_ema": True, "ema_decay": 0.9,
    }


def _run(tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None,
         resume: bool = False) -> subprocess.CompletedProcess:
    path = tmp / f"config-{Path(config['output_dir']).name}.json"
    path.write_text(json.dumps(config))
    plugins = tmp / "plugins.py"
    plugins.write_text(PLUGINS)
    args = [sys.executable, "-m", "vtrain", "run", "--config", str(path), "--plugin-file", str(plugins),
            "-p", "no:example"]
    if resume:
        args += ["--resume_from_checkpoint", "latest"]
    return subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})})


def _outputs(output_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor the run saved at the end: the LoRA, the EMA copy and the CREPA head."""
    tensors = {}
    for file in sorted(output_dir.rglob("*.safetensors")):
        if "checkpoint-" in str(file.relative_to(output_dir)):
            continue
        for key, value in load_file(str(file)).items():
            tensors[f"{file.relative_to(output_dir)}:{key}"] = value
    return tensors


def test_rollout_i2v_crepa_ema_trains_resumes_bit_exactly_and_loads(ltx_tiny_dir: Path, tiny_dinov2_dir: Path,
                                                                   tmp_path: Path) -> None:
    from vtrain_ltxvideo.testing import lora_output_change

    straight = tmp_path / "straight"
    first = _run(tmp_path, _config(ltx_tiny_dir, tiny_dinov2_dir, straight))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Rollout (scheduled sampling): k in 0..3 unipc steps" in first.stdout
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").open()]
    assert len(rows) == 6
    assert all({"loss/flow", "loss/crepa", "rollout_fraction", "rollout_mean_k", "rollout_seconds"} <= set(r)
               for r in rows)
    assert any(r["rollout_fraction"] > 0 for r in rows) and any("loss/reflexflow_adr" in r for r in rows)
    reference = _outputs(straight)
    assert any(key.startswith("ema") for key in reference) and any("crepa_head" in key for key in reference)

    killed = tmp_path / "killed"
    kill_at = random.Random().randint(3, 5)
    second = _run(tmp_path, _config(ltx_tiny_dir, tiny_dinov2_dir, killed), {"KILL_AT_STEP": str(kill_at)})
    assert second.returncode == -9, f"expected SIGKILL at step {kill_at}: {second.stderr[-2000:]}"
    third = _run(tmp_path, _config(ltx_tiny_dir, tiny_dinov2_dir, killed), resume=True)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resumed from" in third.stdout
    resumed = _outputs(killed)
    assert resumed.keys() == reference.keys()
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), f"{key} differs after the resume (killed at {kill_at})"
    resumed_rows = [json.loads(line) for line in (killed / "metrics.jsonl").open()]
    assert [r["loss"] for r in resumed_rows] == pytest.approx([r["loss"] for r in rows], rel=0, abs=0)

    assert lora_output_change(ltx_tiny_dir, straight) > 0  # a fresh LTXPipeline loads the LoRA and it acts
