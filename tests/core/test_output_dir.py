"""One run per output folder, no fresh run over an earlier one, no resume of a different run, no
damaged checkpoint used: with real processes, real files and the tinyflow family."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from vtrain.errors import ConfigError

WAITER = textwrap.dedent("""
    import os, time
    from pathlib import Path
    from vtrain import hookimpl

    @hookimpl
    def on_step_end(run, step, logs):
        if step == 2 and os.environ.get("WAIT_DIR"):  # checkpoint-1 is written
            folder = Path(os.environ["WAIT_DIR"])
            (folder / "started").write_text(str(os.getpid()))
            while not (folder / "go").exists():
                time.sleep(0.05)
""")


def _config(output_dir: Path, **extra: object) -> dict:
    return {"model_family": "tinyflow", "output_dir": str(output_dir), "max_train_steps": 3, "train_batch_size": 2,
            "learning_rate": 3e-3, "mixed_precision": "no", "base_model_default_dtype": "fp32", "lora_rank": 4,
            "seed": 5, "tinyflow_num_samples": 8, "checkpoint_step_interval": 1, **extra}


def _vtrain(tmp_path: Path, config: dict, env: dict[str, str] | None = None, name: str = "config") -> list[str]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    plugin = tmp_path / "waiter.py"
    plugin.write_text(WAITER)
    return [sys.executable, "-m", "vtrain", "run", "--config", str(path), "-p", "vtrain.testing.plugin",
            "--plugin-file", str(plugin)]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "VTRAIN_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1", **extra}


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the first run ended early: {process.communicate()}")
        assert time.monotonic() < deadline, "the first run never reached step 2"
        time.sleep(0.1)


def test_a_second_run_into_the_same_output_dir_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = subprocess.Popen(_vtrain(tmp_path, _config(out), name="first"), env=_env(WAIT_DIR=str(tmp_path)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "started", first)
        second = subprocess.run(_vtrain(tmp_path, _config(out, learning_rate=1e-3), name="second"), env=_env(),
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert "another vtrain run is writing to this folder" in second.stderr
        assert f"pid {first.pid}" in second.stderr and "another output_dir" in second.stderr
        assert "Traceback" not in second.stderr
        # the refused run wrote nothing: the run info is still the first run's
        assert json.loads((out / "run_info.json").read_text())["config"]["learning_rate"] == 3e-3
        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    assert (out / ".vtrain.lock").exists()
    resumed = subprocess.run(_vtrain(tmp_path, _config(out, resume_from_checkpoint="latest"), name="third"),
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over the lock of an earlier run in {out} that is no longer running (pid {first.pid}" in resumed.stdout
    assert "resumed from" in resumed.stdout and (out / "adapter_model.safetensors").is_file()


def test_a_fresh_run_into_an_earlier_runs_folder_is_refused_unless_resumed_or_overwritten(
        tinyflow_config: dict, make_runner, capsys: pytest.CaptureFixture) -> None:
    tinyflow_config.update(max_train_steps=2, checkpoint_step_interval=2)
    first = make_runner(tinyflow_config).run()
    out = first.output_dir
    with pytest.raises(ConfigError) as caught:
        make_runner(tinyflow_config).run()
    text = str(caught.value)
    assert f"output_dir: {out}" in text and "earlier run's outputs" in text and "checkpoint-2" in text
    assert "--resume_from_checkpoint latest" in text and "--overwrite_output_dir true" in text
    assert (out / "checkpoint-2" / "state.json").is_file()  # the refusal touched nothing
    capsys.readouterr()
    tinyflow_config.update(overwrite_output_dir=True, max_train_steps=1, checkpoint_step_interval=1)
    second = make_runner(tinyflow_config).run()
    said = capsys.readouterr().out
    assert "overwrite_output_dir: removed the earlier run's" in said and "checkpoint-2" in said
    assert [p.name for p in second.checkpoints] == ["checkpoint-1"]  # nothing of the first run listed as its own
    assert second.resumed_from is None
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]


def test_overwrite_and_resume_together_are_refused(tinyflow_config: dict, make_runner) -> None:
    tinyflow_config.update(overwrite_output_dir=True, resume_from_checkpoint="latest")
    with pytest.raises(ConfigError, match="overwrite_output_dir deletes the checkpoints"):
        make_runner(tinyflow_config)


def test_resume_with_a_changed_fixed_key_is_refused_naming_it_and_others_are_noted(
        tinyflow_config: dict, make_runner, capsys: pytest.CaptureFixture) -> None:
    tinyflow_config.update(max_train_steps=2, checkpoint_step_interval=2)
    make_runner(tinyflow_config).run()
    fingerprint = json.loads((Path(tinyflow_config["output_dir"]) / "checkpoint-2" / "fingerprint.json").read_text())
    assert fingerprint["fixed"]["lora_rank"] == 4 and fingerprint["fixed"]["seed"] == 7
    assert fingerprint["dataset"]["samples"] == 16
    for key, value in (("lora_rank", 8), ("seed", 8), ("optimizer", "sgd")):
        changed = {**tinyflow_config, "resume_from_checkpoint": "latest", "max_train_steps": 3, key: value}
        with pytest.raises(ConfigError) as caught:
            make_runner(changed).run()
        text = str(caught.value)
        then, now = json.dumps(fingerprint["fixed"][key]), json.dumps(value)
        assert f"{key}: {then} in the checkpoint, {now} now" in text, text
        assert f"resume with the checkpoint's {key}" in text
    capsys.readouterr()
    tinyflow_config.update(resume_from_checkpoint="latest", max_train_steps=3, learning_rate=1e-3)
    result = make_runner(tinyflow_config).run()
    assert result.steps == 3 and result.resumed_from is not None
    out = capsys.readouterr().out
    assert "with changed settings: learning_rate 0.003 -> 0.001, max_train_steps 2 -> 3" in out
    rows = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(row["step"], row["lr"]) for row in rows] == [(1, 3e-3), (2, 3e-3), (3, 1e-3)]  # the new rate applies


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(
        tinyflow_config: dict, make_runner, capsys: pytest.CaptureFixture) -> None:
    tinyflow_config.update(max_train_steps=3, checkpoint_step_interval=1)
    first = make_runner(tinyflow_config).run()
    weights = first.output_dir / "checkpoint-3" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    optimizer = first.output_dir / "checkpoint-2" / "optimizer.pt"
    data = bytearray(optimizer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    optimizer.write_bytes(bytes(data))
    capsys.readouterr()
    result = make_runner({**tinyflow_config, "resume_from_checkpoint": "latest", "max_train_steps": 4}).run()
    out = capsys.readouterr().out
    assert result.resumed_from == first.output_dir / "checkpoint-1" and result.steps == 4
    assert f"note: {first.output_dir / 'checkpoint-3'} is damaged (trainable.safetensors is 100 bytes" in out
    assert f"note: {first.output_dir / 'checkpoint-2'} is damaged (optimizer.pt does not match its checksum" in out
    weights.write_bytes(b"")
    with pytest.raises(ConfigError) as caught:  # named explicitly: refused, with the intact ones listed
        make_runner({**tinyflow_config, "resume_from_checkpoint": str(weights.parent)}).run()
    assert "the checkpoint is damaged: trainable.safetensors is 0 bytes" in str(caught.value)
    assert "checkpoint-4" in str(caught.value)


class _SingleProcess:
    is_main_process = True
    process_index = 0

    def wait_for_everyone(self) -> None:
        pass


def test_a_changed_adapter_shape_names_the_weight(tmp_path: Path) -> None:
    from vtrain.checkpoint import CheckpointWriter, LoopPosition, load_checkpoint

    def parts(size: int) -> tuple:
        weight = torch.nn.Parameter(torch.zeros(size, 3))
        optimizer = torch.optim.SGD([weight], lr=0.1)
        return {"model.block.lora_A.weight": weight}, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1)

    trainables, optimizer, scheduler = parts(4)
    position = LoopPosition(step=1, epoch=0, batch_in_epoch=1, world_size=1, seed=0)
    path = CheckpointWriter(tmp_path, None, _SingleProcess()).save(position, trainables, optimizer, scheduler, {})
    trainables, optimizer, scheduler = parts(8)
    with pytest.raises(ConfigError) as caught:
        load_checkpoint(path, trainables, optimizer, scheduler, {}, 0)
    assert "'model.block.lora_A.weight' has shape (4, 3) in the checkpoint and (8, 3) in this run" in str(caught.value)


def test_output_dir_inside_a_dataset_folder_is_refused(tmp_path: Path, make_runner) -> None:
    data = tmp_path / "clips"
    data.mkdir()
    backends = [{"id": "clips", "type": "local", "dataset_type": "image", "instance_data_dir": str(data),
                 "cache_dir_vae": str(tmp_path / "cache" / "vae"), "resolution": 64, "resolution_type": "pixel_area",
                 "caption_strategy": "filename"},
                {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True,
                 "cache_dir": str(tmp_path / "cache" / "text")}]
    for output in (data, data / "runs" / "one"):
        with pytest.raises(ConfigError) as caught:
            make_runner({"model_family": "tinyflow", "output_dir": str(output), "data_backend_config": backends,
                         "max_train_steps": 1})
        assert f"{output} is inside the folder of dataset 'clips'" in str(caught.value)
    make_runner({"model_family": "tinyflow", "output_dir": str(tmp_path / "out"), "data_backend_config": backends,
                 "max_train_steps": 1})


def test_checkpoints_without_a_manifest_are_still_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A checkpoint of an older vtrain (no manifest.json): a truncated weights file is still caught,
    and a file that cannot be loaded is named instead of a raw loader traceback."""
    from vtrain.checkpoint import CheckpointWriter, LoopPosition, find_resume_path, load_checkpoint

    weight = torch.nn.Parameter(torch.zeros(64))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1)
    writer = CheckpointWriter(tmp_path, None, _SingleProcess())
    for step in (1, 2):
        writer.save(LoopPosition(step, 0, step, 1, 0), {"w": weight}, optimizer, scheduler, {})
        (tmp_path / f"checkpoint-{step}" / "manifest.json").unlink()
    newest = tmp_path / "checkpoint-2" / "trainable.safetensors"
    newest.write_bytes(newest.read_bytes()[:-9])
    assert find_resume_path(tmp_path, "latest") == tmp_path / "checkpoint-1"
    assert "checkpoint-2 is damaged (trainable.safetensors is" in capsys.readouterr().out
    (tmp_path / "checkpoint-1" / "optimizer.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError) as caught:
        load_checkpoint(tmp_path / "checkpoint-1", {"w": weight}, optimizer, scheduler, {}, 0)
    assert "optimizer.pt cannot be used: UnpicklingError" in str(caught.value)


def test_a_run_that_stopped_before_training_does_not_block_the_next(tinyflow_config: dict, make_runner) -> None:
    tinyflow_config.update(max_train_steps=2, gradient_accumulation_steps=64)  # more than the data holds
    with pytest.raises(ConfigError, match="not enough samples for one update"):
        make_runner(tinyflow_config).run()
    assert (Path(tinyflow_config["output_dir"]) / "run_info.json").is_file()
    tinyflow_config.update(gradient_accumulation_steps=1)  # fixed: the same command runs, nothing to protect yet
    assert make_runner(tinyflow_config).run().steps == 2
