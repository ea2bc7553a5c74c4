"""Ctrl-C and SIGTERM stop a run cleanly: real signals to a real ``vtrain run`` child process.

The run saves a checkpoint when one is due or cheap, prints the update reached, the last checkpoint
and the exact command that resumes; that command, run as printed, resumes. A second signal stops at once.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLUGIN = '''
import os, time
from pathlib import Path
from vtrain import hookimpl

@hookimpl
def on_step_end(run, step, logs):
    (run.output_dir / "reached").write_text(str(step))
    time.sleep(float(os.environ.get("STEP_SLEEP", "0.05")))

@hookimpl
def on_checkpoint(run, step, path):
    if os.environ.get("HANG_IN_CHECKPOINT"):
        (run.output_dir / "in-checkpoint").write_text(str(step))
        time.sleep(120)
'''


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", VTRAIN_DISABLE_PLUGIN_AUTOLOAD="1", **extra)


def _start(tmp_path: Path, config: dict, **env: str) -> tuple[subprocess.Popen, list[str]]:
    (tmp_path / "slow.py").write_text(PLUGIN)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    argv = ["--config", str(path), "-p", "vtrain.testing.plugin", "--plugin-file", str(tmp_path / "slow.py")]
    proc = subprocess.Popen([sys.executable, "-m", "vtrain", "run", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(**env), cwd=tmp_path)
    return proc, argv


def _wait_for(path: Path, proc: subprocess.Popen, minimum: int = 1, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended early ({proc.returncode}):\n{out}\n{err[-3000:]}")
        try:
            value = int(path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            value = -1
        if value >= minimum:
            return value
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{path} never reached {minimum}")


def _config(tmp_path: Path, **extra: object) -> dict:
    return {"model_family": "tinyflow", "output_dir": str(tmp_path / "out"), "max_train_steps": 100000,
            "train_batch_size": 2, "tinyflow_num_samples": 16, "mixed_precision": "no", "lora_rank": 4,
            "learning_rate": 1e-3, "seed": 3, **extra}


def test_sigterm_saves_a_cheap_checkpoint_prints_where_and_the_printed_command_resumes(tmp_path: Path) -> None:
    proc, _argv = _start(tmp_path, _config(tmp_path))
    out_dir = tmp_path / "out"
    _wait_for(out_dir / "reached", proc, minimum=3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "vtrain: SIGTERM received: finishing the current update" in err
    state = json.loads((out_dir / max(p.name for p in out_dir.glob("checkpoint-*")) / "state.json").read_text())
    step = state["step"]
    assert f"vtrain: stopped: SIGTERM at update {step} of 100000" in err
    assert f"wrote checkpoint-{step} (cheap: " in err  # checkpoint_step_interval is 0: a LoRA is cheap to save
    assert f"update reached:   {step}" in err
    assert f"last checkpoint:  {out_dir / f'checkpoint-{step}'} (update {step})" in err
    assert "Traceback" not in err
    assert json.loads((out_dir / "run_info.json").read_text())["stopped"] == "SIGTERM"  # readers can tell a stop
    resume = next(line.split("resume with:", 1)[1].strip() for line in err.splitlines() if "resume with:" in line)
    command = shlex.split(resume)
    assert command[:2] == ["vtrain", "run"] and command[-2:] == ["--resume_from_checkpoint", "latest"]
    # run it exactly as printed (the installed script is `python -m vtrain`), two updates further
    done = subprocess.run([sys.executable, "-m", "vtrain", *command[1:], "--max_train_steps", str(step + 2)],
                          capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {out_dir / f'checkpoint-{step}'} at step {step}" in done.stdout
    assert f"done: {step + 2} updates" in done.stdout
    assert "stopped" not in json.loads((out_dir / "run_info.json").read_text())  # the resumed run finished


def test_ctrl_c_mid_accumulation_abandons_the_update_and_writes_the_due_checkpoint(tmp_path: Path) -> None:
    proc, _argv = _start(tmp_path, _config(tmp_path, gradient_accumulation_steps=2, checkpoint_step_interval=1000))
    out_dir = tmp_path / "out"
    _wait_for(out_dir / "reached", proc, minimum=2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    (checkpoint,) = out_dir.glob("checkpoint-*")
    state = json.loads((checkpoint / "state.json").read_text())
    assert f"wrote {checkpoint.name} (due: checkpoints are on (every 1000 updates))" in err
    assert state["batch_in_epoch"] % 2 == 0  # a whole update: a half-accumulated one is abandoned, never saved
    metrics = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == state["step"]  # the log is flushed up to the update reached
    assert not (out_dir / "adapter_model.safetensors").exists()  # a stopped run is not a finished one


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    proc, _argv = _start(tmp_path, _config(tmp_path), HANG_IN_CHECKPOINT="1")
    out_dir = tmp_path / "out"
    _wait_for(out_dir / "reached", proc, minimum=2)
    proc.send_signal(signal.SIGINT)
    _wait_for(out_dir / "in-checkpoint", proc, minimum=1)  # the stop's checkpoint is being written (hangs)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 30
    assert proc.returncode == 130, err[-3000:]
    assert "vtrain: second SIGINT: stopping at once, without saving" in err
    assert "update reached:" in err and "last checkpoint:" in err
    assert "vtrain: interrupted (SIGINT)" in err
