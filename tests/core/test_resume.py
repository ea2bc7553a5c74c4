"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

KILLER = textwrap.dedent("""
    import os, signal
    from vtrain import hookimpl

    KILL_AT = int(os.environ.get("KILL_AT_STEP", "0"))
    KILL_IN_CHECKPOINT = int(os.environ.get("KILL_IN_CHECKPOINT_AT", "0"))

    class Bomb:
        def __init__(self, run):
            self.run = run
        def state_dict(self):
            if self.run.state.step == KILL_IN_CHECKPOINT:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-write: weights and optimizer are already in the temp folder
            return {"step": self.run.state.step}
        def load_state_dict(self, state):
            pass

    @hookimpl
    def on_run_start(run):
        run.register_stateful("bomb", Bomb(run))

    @hookimpl
    def on_step_end(run, step, logs):
        if step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
""")


def _config(output_dir: Path) -> dict:
    return {
        "model_family": "tinyflow", "output_dir": str(output_dir), "max_train_steps": 12, "train_batch_size": 2,
        "gradient_accumulation_steps": 2, "learning_rate": 3e-3, "mixed_precision": "no",
        "base_model_default_dtype": "fp32", "lora_rank": 4, "lora_dropout": 0.1, "seed": 11, "tinyflow_num_samples": 16,
        "checkpoint_step_interval": 3, "checkpoints_total_limit": 2, "lr_scheduler": "cosine", "lr_warmup_steps": 2,
        "max_grad_norm": 0.5, "grad_clip_method": "norm",
    }


def _run(tmp_path: Path, output_dir: Path, env: dict[str, str], resume: bool = False, extra: dict | None = None,
         plugins: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    config = tmp_path / f"config-{output_dir.name}.json"
    config.write_text(json.dumps({**_config(output_dir), **(extra or {})}))
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    # only the plugins this test needs, so other plugins cannot change the run
    args = [sys.executable, "-m", "vtrain", "run", "--config", str(config), "-p", "vtrain.testing.plugin",
            "--plugin-file", str(killer)]
    for plugin in plugins:
        args += ["-p", plugin]
    if resume:
        args += ["--resume_from_checkpoint", "latest"]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, "VTRAIN_DISABLE_PLUGIN_AUTOLOAD": "1", **env}, timeout=300)


def _final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    tmp = tmp_path_factory.mktemp("reference")
    proc = _run(tmp, tmp / "straight", {})
    assert proc.returncode == 0, proc.stderr
    return _final_weights(tmp / "straight")


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path: Path, reference: dict) -> None:
    kill_at = random.Random().randint(4, 11)
    out = tmp_path / "killed"
    first = _run(tmp_path, out, {"KILL_AT_STEP": str(kill_at)})
    assert first.returncode == -9, f"expected SIGKILL at step {kill_at}: {first.stderr[-2000:]}"
    assert not (out / "adapter_model.safetensors").exists()
    second = _run(tmp_path, out, {}, resume=True)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    _assert_identical(_final_weights(out), reference)


ROLLOUT = {"scheduled_sampling_max_step_offset": 4, "scheduled_sampling_probability": 0.75,
           "scheduled_sampling_sampler": "unipc"}


def test_sigkill_then_resume_with_rollout_is_bit_identical(tmp_path: Path, reference: dict) -> None:
    """Rollout (vtrain-rollout) draws its choices and lengths from the checkpointed RNG streams."""
    pytest.importorskip("vtrain_rollout")
    plugins = ("vtrain_rollout.plugin",)
    straight = tmp_path / "rollout-straight"
    proc = _run(tmp_path, straight, {}, extra=ROLLOUT, plugins=plugins)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all(row["rollout_fraction"] > 0 for row in rows)
    rolled_out = _final_weights(straight)
    assert any(not torch.equal(rolled_out[k], reference[k]) for k in reference)  # rollout changed the run
    out = tmp_path / "rollout-killed"
    kill_at = random.Random().randint(4, 11)
    first = _run(tmp_path, out, {"KILL_AT_STEP": str(kill_at)}, extra=ROLLOUT, plugins=plugins)
    assert first.returncode == -9, f"expected SIGKILL at step {kill_at}: {first.stderr[-2000:]}"
    second = _run(tmp_path, out, {}, resume=True, extra=ROLLOUT, plugins=plugins)
    assert second.returncode == 0, second.stderr
    _assert_identical(_final_weights(out), rolled_out)


def test_kill_during_checkpoint_write_keeps_previous_checkpoint(tmp_path: Path, reference: dict) -> None:
    out = tmp_path / "torn"
    first = _run(tmp_path, out, {"KILL_IN_CHECKPOINT_AT": "6"})
    assert first.returncode == -9
    assert (out / "checkpoint-3" / "state.json").is_file()
    assert not (out / "checkpoint-6").exists()
    assert any(p.name.startswith(".checkpoint-6.tmp") for p in out.iterdir())  # the torn write, never renamed
    second = _run(tmp_path, out, {}, resume=True)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "checkpoint-3" in second.stdout
    assert not any(p.name.startswith(".checkpoint-") for p in out.iterdir())  # leftovers cleaned
    _assert_identical(_final_weights(out), reference)


def test_latest_on_fresh_output_dir_starts_from_scratch(tinyflow_config: dict, make_runner) -> None:
    tinyflow_config.update(resume_from_checkpoint="latest", max_train_steps=2)
    result = make_runner(tinyflow_config).run()
    assert result.resumed_from is None and result.steps == 2
    assert result.checkpoints == []  # checkpoint_step_interval=0 (the default): no checkpoint, as its help says


def test_checkpoint_rotation_and_contents(tinyflow_config: dict, make_runner) -> None:
    tinyflow_config.update(checkpoint_step_interval=2, checkpoints_total_limit=2, max_train_steps=7)
    result = make_runner(tinyflow_config).run()
    names = sorted(p.name for p in result.checkpoints)
    assert names == ["checkpoint-6", "checkpoint-7"]
    ckpt = result.output_dir / "checkpoint-6"
    for name in ("trainable.safetensors", "optimizer.pt", "lr_scheduler.pt", "rng-rank0.pt", "state.json", "statefuls.pt"):
        assert (ckpt / name).is_file(), name
    info = json.loads((result.output_dir / "run_info.json").read_text())
    assert info["config"]["max_train_steps"] == 7
    assert {p["name"] for p in info["plugins"]} >= {"core", "vtrain.testing.plugin"}  # tinyflow is test-only
    assert "git_commit" in info and all("version" in p for p in info["plugins"])


def test_resume_extends_a_finished_run(tinyflow_config: dict, make_runner) -> None:
    tinyflow_config.update(checkpoint_step_interval=4, max_train_steps=4)
    make_runner(tinyflow_config).run()
    tinyflow_config.update(max_train_steps=6, resume_from_checkpoint="latest")
    result = make_runner(tinyflow_config).run()
    assert result.steps == 6 and result.resumed_from is not None and result.resumed_from.name == "checkpoint-4"


class _SingleProcess:
    is_main_process = True
    process_index = 0

    def wait_for_everyone(self) -> None:
        pass


def test_overwriting_a_checkpoint_never_leaves_a_torn_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun over an old output_dir replaces checkpoint-N; a kill while the old copy is being
    deleted must not leave a checkpoint-N that lists as complete but lacks its weights."""
    import shutil

    from vtrain import checkpoint
    from vtrain.checkpoint import CheckpointWriter, LoopPosition, list_checkpoints

    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    writer = CheckpointWriter(tmp_path, None, _SingleProcess())
    position = LoopPosition(step=2, epoch=0, batch_in_epoch=2, world_size=1, seed=0)
    writer.save(position, {"w": weight}, optimizer, scheduler, {})

    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):  # deletes the weights, then the process "dies"
        Path(path, "trainable.safetensors").unlink(missing_ok=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed_midway)
    with torch.no_grad():
        weight.fill_(1.0)
    with pytest.raises(KeyboardInterrupt):
        writer.save(position, {"w": weight}, optimizer, scheduler, {})
    monkeypatch.setattr(checkpoint.shutil, "rmtree", real_rmtree)

    listed = dict(list_checkpoints(tmp_path))
    assert list(listed) == [2]
    saved = load_file(str(listed[2] / "trainable.safetensors"))
    assert torch.equal(saved["w"], torch.ones(3))  # the new checkpoint, complete
    writer.clean_leftovers()
    assert not any(p.name.startswith(".checkpoint-") for p in tmp_path.iterdir())


def test_resume_without_rng_state_says_why(tinyflow_config: dict, make_runner, capsys: pytest.CaptureFixture) -> None:
    tinyflow_config.update(checkpoint_step_interval=2, max_train_steps=2)
    first = make_runner(tinyflow_config).run()
    (first.output_dir / "checkpoint-2" / "rng-rank0.pt").unlink()
    capsys.readouterr()
    tinyflow_config.update(max_train_steps=3, resume_from_checkpoint="latest")
    assert make_runner(tinyflow_config).run().steps == 3
    out = capsys.readouterr().out
    assert "holds no RNG state for process 0, so the noise differs" in out
    assert "written by" not in out  # same world size: not blamed on a changed process count


def test_metrics_of_a_resumed_run_have_each_step_once(tmp_path: Path, reference: dict) -> None:
    out = tmp_path / "killed-metrics"
    first = _run(tmp_path, out, {"KILL_AT_STEP": "5"})  # checkpoints at 3: steps 4 and 5 are logged, then repeated
    assert first.returncode == -9
    assert _run(tmp_path, out, {}, resume=True).returncode == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))
