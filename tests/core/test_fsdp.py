"""Sharded training (FSDP2) with two gloo ranks on CPU under torchrun, and the refused combinations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vtrain.errors import ConfigError
from vtrain.runner import Runner
from vtrain.testing.helpers import run_distributed

WORKER = Path(__file__).with_name("fsdp_worker.py")
TINY = {"model_family": "tinyflow", "max_train_steps": 4, "train_batch_size": 2, "learning_rate": 3e-3,
        "mixed_precision": "no", "base_model_default_dtype": "fp32", "lora_rank": 4, "seed": 3,
        "tinyflow_num_samples": 16, "grad_clip_method": "norm"}

# kills rank 0 at VTRAIN_TEST_KILL_AT; adds a plugin-owned trainable (outside the sharded model) whose
# loss term differs per rank, so its weights stay equal across ranks only if its gradients are averaged
KILLER = textwrap.dedent("""
    import hashlib, os, signal
    import torch
    from vtrain import hookimpl

    @hookimpl(wrapper=True)
    def add_adapters(bundle, config):
        result = yield
        torch.manual_seed(5)
        bundle.extra_trainables["head"] = torch.nn.Linear(4, 4)
        return result

    @hookimpl(wrapper=True)
    def compute_loss(bundle, batch, config, state):
        out = yield
        features = batch["latents"].float().mean(dim=(2, 3, 4))
        out.add_term("head", 0.1 * bundle.extra_trainables["head"](features).pow(2).mean())
        return out

    @hookimpl
    def on_step_end(run, step):
        if step == int(os.environ.get("VTRAIN_TEST_KILL_AT", "0")) and run.accelerator.is_main_process:
            os.kill(os.getpid(), signal.SIGKILL)

    @hookimpl
    def on_run_end(run, result):
        weights = run.bundle.extra_trainables["head"].weight.detach().cpu().numpy().tobytes()
        rank = run.accelerator.process_index
        with open(f"{run.output_dir}/head-rank{rank}.txt", "w") as handle:
            handle.write(hashlib.sha256(weights).hexdigest())
""")


PLUGINS = ("vtrain.testing.plugin", "vtrain.services.ema")


def _runner(overrides: dict[str, Any], **kwargs: Any) -> Runner:
    return Runner.from_config({**TINY, **overrides}, plugins=list(PLUGINS), autoload=False, **kwargs)


def test_sharded_training_equals_one_process_and_each_rank_holds_half(tmp_path: Path) -> None:
    env = {**os.environ, "VTRAIN_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29631", str(WORKER), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for model_type, weight_tolerance in (("lora", 1e-5), ("full", 1e-4), ("full_options", 1e-4)):
        for result in ranks:
            record = result[model_type]
            assert record["loss"] == pytest.approx(record["ref_loss"], rel=1e-5, abs=1e-6)
            assert record["norm"] == pytest.approx(record["ref_norm"], rel=1e-5)  # global norm across shards
            assert record["fraction"] == pytest.approx(0.5, abs=0.05)  # measured on the DTensor local shards
        assert ranks[0][model_type]["max_weight_diff"] < weight_tolerance
    for result in ranks:  # HSDP with 2 copies of 1 shard: equal losses, every rank holds a whole copy
        assert result["hsdp"]["loss"] == pytest.approx(result["hsdp"]["ref_loss"], rel=1e-5, abs=1e-6)
        assert result["hsdp"]["fraction"] == 1.0
    assert ranks[0]["hsdp"]["max_weight_diff"] < 1e-5
    for result in ranks:  # bf16 compute against the fp32 single process: close, with fp32 masters kept sharded
        assert result["bf16"]["loss"] == pytest.approx(result["bf16"]["ref_loss"], rel=2e-2)
        assert result["bf16"]["norm"] == pytest.approx(result["bf16"]["ref_norm"], rel=3e-2)
        assert result["bf16"]["master_dtypes"] == ["torch.float32"] and result["bf16"]["fraction"] == 0.5
    # fsdp_cpu_ram_efficient_loading: only rank 0 read the weights file; the shards equal the file
    assert len(ranks[0]["efficient"]["reads"]) == 1 and ranks[1]["efficient"]["reads"] == []
    assert ranks[0]["efficient"]["equal_to_file"] and ranks[1]["efficient"]["fraction"] == pytest.approx(0.5, abs=0.05)


def test_killed_sharded_run_resumes_bit_identically_and_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "killer.py").write_text(KILLER)
    config = {**TINY, "fsdp_enable": True, "checkpoint_step_interval": 2, "use_ema": True, "ema_decay": 0.9,
              "validation_prompt": "a cat", "validation_num_inference_steps": 2, "validation_resolution": ["16x16"],
              "validation_step_interval": 2}
    whole = {**config, "output_dir": str(tmp_path / "whole")}
    proc = run_distributed(whole, tmp_path, [tmp_path / "killer.py"], port=29641, plugins=PLUGINS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "FSDP2: 2 processes" in proc.stdout and "1 model copy x 2 shards" in proc.stdout
    assert (tmp_path / "whole" / "checkpoint-4" / "sharded" / ".metadata").is_file()
    assert sorted(p.name for p in (tmp_path / "whole" / "validation").iterdir()) == ["step-0", "step-2", "step-4"]
    assert (tmp_path / "whole" / "head-rank0.txt").read_text() == (tmp_path / "whole" / "head-rank1.txt").read_text()

    killed = {**config, "output_dir": str(tmp_path / "killed")}
    monkeypatch.setenv("VTRAIN_TEST_KILL_AT", "3")
    proc = run_distributed(killed, tmp_path, [tmp_path / "killer.py"], port=29642, plugins=PLUGINS)
    assert proc.returncode != 0
    monkeypatch.delenv("VTRAIN_TEST_KILL_AT")
    assert not (tmp_path / "killed" / "adapter_model.safetensors").exists()
    shutil.copytree(tmp_path / "killed", tmp_path / "single")

    proc = run_distributed({**killed, "resume_from_checkpoint": "latest"}, tmp_path, [tmp_path / "killer.py"], port=29643,
                           plugins=PLUGINS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stdout and "checkpoint-2" in proc.stdout
    for name in ("adapter_model.safetensors", "ema/adapter_model.safetensors", "head.safetensors"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").open()] for run in ("whole", "killed")]
    assert losses[0] == losses[1] and len(losses[0]) == 4

    # the same checkpoint, resumed by one unsharded process: DCP re-shards, and the run says what differs
    result = _runner({**config, "fsdp_enable": False, "output_dir": str(tmp_path / "single"),
                      "resume_from_checkpoint": "latest"}, plugin_files=[tmp_path / "killer.py"]).run()
    out = capsys.readouterr().out
    assert result.steps == 4 and result.resumed_from is not None and result.resumed_from.name == "checkpoint-2"
    assert "written by 2 processes and this run has 1, so the data order and noise differ" in out
    assert (tmp_path / "single" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "single" / "head.safetensors").is_file()


# counts FSDP2's gradient reduce-scatters as each micro-batch's forward starts
COUNTER = textwrap.dedent("""
    import json
    import torch.distributed as dist
    from vtrain import hookimpl

    calls = []
    original = dist.reduce_scatter_single

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    dist.reduce_scatter_single = counting
    seen = []

    @hookimpl
    def compute_loss(bundle, batch, config, state):
        seen.append(len(calls))

    @hookimpl
    def on_run_end(run, result):
        with open(f"{run.output_dir}/reduce-scatters-rank{run.accelerator.process_index}.json", "w") as handle:
            json.dump(seen + [len(calls)], handle)
""")


def test_sharded_gradient_accumulation_reduces_once_per_update(tmp_path: Path) -> None:
    (tmp_path / "counter.py").write_text(COUNTER)
    config = {**TINY, "fsdp_enable": True, "gradient_accumulation_steps": 2, "max_train_steps": 2,
              "output_dir": str(tmp_path / "out")}
    proc = run_distributed(config, tmp_path, [tmp_path / "counter.py"], port=29651, plugins=PLUGINS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / "out" / f"reduce-scatters-rank{rank}.json").read_text())
        # reduce-scatters done before micro-batches 1, 2 (update 1), 3, 4 (update 2) start, and at the end
        assert len(seen) == 5 and seen[0] == 0, seen
        per_update = seen[2]
        assert seen[1] == 0 and per_update > 0, seen  # the first micro-batch kept its gradients local
        assert seen[3] == per_update and seen[4] == 2 * per_update, seen


@pytest.mark.parametrize(("overrides", "key", "words"), [
    ({"fsdp_enable": True, "grad_clip_method": "value"}, "grad_clip_method", "set grad_clip_method=norm"),
    ({"fsdp_enable": True, "fsdp_version": 1}, "fsdp_version", "use fsdp_version=2"),
    ({"fsdp_offload_params": True}, "fsdp_offload_params", "fsdp_enable is false"),
    ({"fsdp_enable": True, "context_parallel_size": 2}, "context_parallel_size", "must share one"),
    ({"fsdp_enable": True, "fsdp_transformer_layer_cls_to_wrap": ["Nope"], "fsdp_replicate_degree": 3},
     "fsdp_replicate_degree", "divisor"),
])
def test_bad_fsdp_combinations_are_refused_at_configure_time(overrides: dict[str, Any], key: str, words: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as error:
        _runner(overrides)
    assert any(p.where.endswith(key) and words in f"{p.message} {p.fix}" for p in error.value.problems), error.value


def test_fsdp_in_one_process_is_refused_with_the_launch_fix(tmp_path: Path) -> None:
    runner = _runner({"fsdp_enable": True, "output_dir": str(tmp_path / "out")})
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node N"):
        runner.run()
    assert not (tmp_path / "out").exists()  # refused before anything was loaded or written


def test_family_trait_names_the_block_and_the_summary_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain.training.sharding import block_classes, world_layout

    monkeypatch.setenv("WORLD_SIZE", "16")
    runner = _runner({"fsdp_enable": True, "fsdp_replicate_degree": 2, "fsdp_offload_params": True})
    assert block_classes(runner.config, runner.family) == ("TinyBlock",)
    line = world_layout(runner.config, 16, "cuda:0")
    assert line.startswith("HSDP: 16 processes on cuda:0 = 2 model copies x 8 shards") and "offloaded" in line


def test_distributed_recipes_resolve_and_their_launch_files_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "examples" / "distributed", tmp_path / "examples" / "distributed")
    (tmp_path / "datasets" / "my-clips").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for name, world in (("ltxvideo_13b_full_fsdp", 8), ("ltxvideo_13b_lora_fsdp", 8), ("ltxvideo_13b_full_hsdp_2x8", 16)):
        monkeypatch.setenv("WORLD_SIZE", str(world))
        config = Runner.from_config(f"examples/distributed/{name}.json").config
        assert config.fsdp_enable and config.grad_clip_method == "norm"
    for name, processes, machines in (("accelerate_1node_8gpu", 8, 1), ("accelerate_2node_8gpu", 16, 2)):
        settings = yaml.safe_load((tmp_path / "examples" / "distributed" / f"{name}.yaml").read_text())
        assert settings["distributed_type"] == "MULTI_GPU"  # vtrain shards itself; FSDP there is refused
        assert (settings["num_processes"], settings["num_machines"]) == (processes, machines)
