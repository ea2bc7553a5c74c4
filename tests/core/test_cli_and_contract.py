"""CLI start-up stays light, the Runner API returns a result, tinyflow passes the family contract."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vtrain.testing.contract import FamilyContract


def test_help_and_plugins_do_not_import_torch() -> None:
    code = ("import sys, io, contextlib\n"
            "from vtrain.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['--help']) == 0\n"
            "    assert main(['plugins']) == 0\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'accelerate', 'peft') if m in sys.modules]\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"imported at start-up: {proc.stdout}"


def test_unknown_command_suggests() -> None:
    proc = subprocess.run([sys.executable, "-m", "vtrain", "plugin"], capture_output=True, text=True)
    assert proc.returncode == 2 and "did you mean plugins" in proc.stderr


def test_runner_result(tinyflow_config: dict, make_runner: Any) -> None:
    tinyflow_config.update(max_train_steps=30, validation_prompt="a test", validation_step_interval=15,
                           validation_num_inference_steps=3)
    result = make_runner(tinyflow_config).run()
    assert result.steps == 30
    assert math.isfinite(result.final_loss)
    assert [p.name for p in result.model_paths] == ["adapter_model.safetensors"]
    steps = sorted({p.parent.name for p in result.validation})
    assert steps == ["step-0", "step-15", "step-30"]  # benchmark before training, interval, end


def test_loss_falls_on_tinyflow(tinyflow_config: dict, make_runner: Any) -> None:
    import json

    tinyflow_config.update(max_train_steps=150, model_type="full", learning_rate=1e-2, train_batch_size=4,
                           tinyflow_width=64)
    result = make_runner(tinyflow_config).run()
    losses = [json.loads(line)["loss"] for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    assert last < 0.85 * first, (first, last)


def test_grad_clip_value_and_accumulation_and_bf16(tinyflow_config: dict, make_runner: Any) -> None:
    """Each feature is observed, not only the step count: SGD without momentum moves every weight by
    lr x its clipped gradient, so no element moves more than lr x max_grad_norm; two loss calls per
    update; the loss runs under bf16 autocast; each block runs twice per micro-batch (forward, then
    recomputed in the backward pass) with gradient checkpointing."""
    import torch

    from vtrain import hookimpl

    seen: dict[str, Any] = {"loss_calls": 0, "autocast": set(), "block_calls": 0, "moves": []}

    class Observe:
        name = "observe"

        @hookimpl
        def on_run_start(self, run: Any) -> None:
            block = next(m for n, m in run.bundle.model.named_modules() if n.endswith("blocks.0"))
            # a pre-hook: checkpoint recomputation stops early, before forward hooks would run
            block.register_forward_pre_hook(lambda *_: seen.__setitem__("block_calls", seen["block_calls"] + 1))
            seen["before"] = {n: p.detach().clone() for n, p in run.bundle.trainable_named_parameters()}

        @hookimpl(wrapper=True)
        def compute_loss(self) -> Any:
            seen["loss_calls"] += 1
            seen["autocast"].add((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return (yield)

        @hookimpl
        def on_step_end(self, run: Any, step: int) -> None:
            now = {n: p.detach().clone() for n, p in run.bundle.trainable_named_parameters()}
            seen["moves"].append(max(float((now[n] - seen["before"][n]).abs().max()) for n in now))
            seen["before"] = now

    lr, clip = 0.5, 1e-4
    tinyflow_config.update(max_train_steps=4, grad_clip_method="value", max_grad_norm=clip, optimizer="sgd",
                           adam_beta1=0.0, adam_weight_decay=0.0, learning_rate=lr, gradient_accumulation_steps=2,
                           mixed_precision="bf16", gradient_checkpointing=True)
    result = make_runner(tinyflow_config, plugins=[Observe()]).run()
    assert result.steps == 4
    assert seen["loss_calls"] == 8  # 4 updates x 2 accumulated micro-batches
    assert seen["autocast"] == {(True, torch.bfloat16)}
    assert seen["block_calls"] == 2 * 8  # gradient checkpointing recomputes the block in the backward pass
    assert len(seen["moves"]) == 4
    assert all(0 < move <= lr * clip * 1.001 for move in seen["moves"]), seen["moves"]
    assert max(seen["moves"]) > 0.99 * lr * clip  # the clip was reached: without it some element moves further


def test_nan_loss_stops_with_step_and_terms(tinyflow_config: dict, make_runner: Any) -> None:
    from vtrain import hookimpl
    from vtrain.errors import TrainingError

    class Poison:
        name = "poison"

        @hookimpl(wrapper=True)
        def compute_loss(self, state: Any) -> Any:
            out = yield
            if state.step == 2:
                out.add_term("poison", out.loss * float("nan"))
            return out

    with pytest.raises(TrainingError, match=r"(?s)step 3.*poison"):
        make_runner(tinyflow_config, plugins=[Poison()]).run()


def test_epochs_and_ignore_final_epochs(tinyflow_config: dict, make_runner: Any) -> None:
    tinyflow_config.update(max_train_steps=0, num_train_epochs=2, train_batch_size=4)
    assert make_runner(tinyflow_config).run().steps == 8  # 16 samples, 2 buckets of 8 -> 4 batches per epoch
    tinyflow_config.update(max_train_steps=6, num_train_epochs=1, output_dir=tinyflow_config["output_dir"] + "2")
    assert make_runner(tinyflow_config).run().steps == 4
    tinyflow_config.update(ignore_final_epochs=True, output_dir=tinyflow_config["output_dir"] + "3")
    assert make_runner(tinyflow_config).run().steps == 6


def test_not_enough_data_message(tinyflow_config: dict, make_runner: Any) -> None:
    from vtrain.errors import ConfigError

    tinyflow_config.update(train_batch_size=16, tinyflow_num_samples=8)
    with pytest.raises(ConfigError, match="not enough samples"):
        make_runner(tinyflow_config).run()


class TestTinyflowContract(FamilyContract):
    @pytest.fixture
    def family_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"model_family": "tinyflow", "output_dir": str(tmp_path / "out"), "max_train_steps": 3,
                "train_batch_size": 2, "mixed_precision": "no", "tinyflow_num_samples": 8}


def test_tinyflow_validation_follows_the_validation_keys(tinyflow_config: dict, make_runner: Any) -> None:
    import numpy as np

    from vtrain.testing.tinyflow import caption_label

    prompt = next(p for p in ("a cube", "a ball", "a cone", "a ring") if caption_label(p, 4) != caption_label("", 4))
    tinyflow_config.update(max_train_steps=1, validation_prompt=prompt, validation_resolution="32x16,16x16",
                           validation_num_video_frames=13, validation_num_inference_steps=2, disable_benchmark=True)
    first = make_runner(tinyflow_config).run()
    # validation_step_interval=0 with disable_benchmark: validated only at the end, as the key's help says
    assert {p.parent.name for p in first.validation} == {"step-1"}
    shapes = {p.name: np.load(p).shape for p in first.validation}
    assert shapes == {"validation-32x16.npy": (4, 4, 2, 4), "validation-16x16.npy": (4, 4, 2, 2)}
    guided = np.load(first.output_dir / "validation" / "step-1" / "validation-16x16.npy")
    tinyflow_config.update(validation_guidance=1.0, output_dir=tinyflow_config["output_dir"] + "-unguided")
    plain = make_runner(tinyflow_config).run()
    assert not np.array_equal(np.load(plain.output_dir / "validation" / "step-1" / "validation-16x16.npy"), guided)
