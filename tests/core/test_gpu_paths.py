"""Core pieces of the GPU paths, checked on the CPU: fused AdamW on CUDA parameters, checkpoints
loaded onto the CPU, the process-group timeout, and a failing rank that ends the others promptly."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from vtrain.testing.helpers import run_distributed


def test_adamw_is_fused_exactly_when_every_parameter_is_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain import core_plugin

    made: list[dict[str, Any]] = []
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **kwargs: made.append(kwargs))
    config = SimpleNamespace(learning_rate=1e-4, adam_beta1=0.9, adam_beta2=0.999, adam_weight_decay=0.0,
                             adam_epsilon=1e-8)

    def param(device: str, dtype: torch.dtype = torch.float32) -> Any:
        return SimpleNamespace(device=torch.device(device), is_floating_point=lambda: dtype.is_floating_point,
                               dtype=dtype)

    monkeypatch.setattr(torch, "is_floating_point", lambda p: p.dtype.is_floating_point)
    core_plugin._torch_adamw([param("cuda"), param("cuda")], config, {})
    core_plugin._torch_adamw([param("cuda"), param("cpu")], config, {})
    core_plugin._torch_adamw([param("cpu")], config, {})
    core_plugin._torch_adamw([param("cuda")], config, {"foreach": True})  # the user's choice wins
    assert [kwargs.get("fused") for kwargs in made] == [True, None, None, None]
    assert made[3]["foreach"] is True


def test_resume_loads_every_file_onto_the_cpu(tinyflow_config: dict[str, Any], make_runner: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """On several GPUs rank 0's CUDA tensors must not all land on cuda:0: every torch.load maps to the CPU."""
    make_runner({**tinyflow_config, "checkpoint_step_interval": 2, "max_train_steps": 2}).run()
    real_load = torch.load
    locations: list[Any] = []

    def recording_load(*args: Any, **kwargs: Any) -> Any:
        locations.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    result = make_runner({**tinyflow_config, "checkpoint_step_interval": 2, "max_train_steps": 3,
                          "resume_from_checkpoint": "latest"}).run()
    assert result.resumed_from is not None and result.steps == 3
    assert len(locations) >= 4 and set(locations) == {"cpu"}, locations


def test_process_group_timeout_is_longer_than_nccls_default() -> None:
    from vtrain.training.ddp import PROCESS_GROUP_TIMEOUT, accelerator_handlers

    (handler,) = accelerator_handlers()
    assert handler.timeout == PROCESS_GROUP_TIMEOUT and PROCESS_GROUP_TIMEOUT.total_seconds() >= 3600


FAILING_RANK = textwrap.dedent("""
    import json
    from vtrain import hookimpl

    @hookimpl
    def on_run_start(run):
        import torch, torch.distributed as dist
        pg = dist.distributed_c10d._get_default_group()
        timeout = pg._get_backend(torch.device("cpu")).options._timeout.total_seconds()
        with open(f"{run.output_dir}/timeout-rank{dist.get_rank()}.json", "w") as handle:
            json.dump(timeout, handle)

    @hookimpl
    def on_step_end(run, step, logs):
        import torch.distributed as dist
        if step == 1 and dist.get_rank() == 0:
            raise RuntimeError("rank 0 fails on purpose")
""")


def test_a_failing_rank_ends_the_others_promptly(tmp_path: Path) -> None:
    """Rank 0 fails after step 1 while rank 1 goes on to the next all-reduce; the run must end in
    seconds, not at the (two-hour) process-group timeout."""
    out = tmp_path / "fail"
    config = {"model_family": "tinyflow", "output_dir": str(out), "max_train_steps": 50, "train_batch_size": 2,
              "learning_rate": 3e-3, "mixed_precision": "no", "base_model_default_dtype": "fp32", "lora_rank": 4,
              "seed": 3, "tinyflow_num_samples": 32}
    (tmp_path / "failing.py").write_text(FAILING_RANK)
    started = time.monotonic()
    proc = run_distributed(config, tmp_path, [tmp_path / "failing.py"], port=29541)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0 and "rank 0 fails on purpose" in proc.stderr
    assert elapsed < 120, elapsed
    print(f"failing run ended after {elapsed:.1f} s")
    assert json.loads((out / "timeout-rank1.json").read_text()) == 7200.0
