"""Validation adapters (SimpleTuner's validation_adapter_* keys): an extra LoRA applied during validation
only; training, the trained adapter and the saved files never see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vtrain.errors import ConfigError

VALIDATION = {"validation_prompt": "a red cube", "validation_num_inference_steps": 3, "validation_resolution": "32x32",
              "max_train_steps": 3, "validation_guidance": 1.0}


def write_lora(folder: Path, seed: int = 0) -> Path:
    """A tiny LoRA for the tinyflow model: on the trained targets and on proj_out (which the trained LoRA
    does not touch, so the service must wrap and unwrap it)."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for module, (inp, out) in {"blocks.0.to_hidden": (32, 64), "blocks.1.to_out": (64, 32), "proj_out": (32, 4)}.items():
        state[f"{module}.lora_A.weight"] = torch.randn(2, inp, generator=gen) * 0.3
        state[f"{module}.lora_B.weight"] = torch.randn(out, 2, generator=gen) * 0.3
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "fast.safetensors"))
    return folder / "fast.safetensors"


def run(make_runner: Any, config: dict[str, Any]) -> Any:
    return make_runner(config).run()


def renders(output: Path) -> dict[str, np.ndarray]:
    return {f"{p.parent.name}/{p.stem}": np.load(p) for p in (output / "validation").rglob("*.npy")}


def saved(output: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(output.rglob("adapter_model.safetensors"))
    return load_file(str(files[-1]))


def test_the_adapter_is_applied_during_validation_only(tinyflow_config: dict[str, Any], make_runner: Any,
                                                       tmp_path: Path) -> None:
    lora = write_lora(tmp_path / "loras")
    plain = {**tinyflow_config, **VALIDATION, "output_dir": str(tmp_path / "plain")}
    run(make_runner, plain)
    compared = {**plain, "output_dir": str(tmp_path / "compared"), "validation_adapter_path": str(lora),
                "validation_adapter_name": "fast", "validation_adapter_mode": "comparison"}
    run(make_runner, compared)
    base, both = renders(tmp_path / "plain"), renders(tmp_path / "compared")
    assert set(both) == {f"step-{s}/{n}" for s in (0, 3) for n in ("validation-32x32", "validation-fast-32x32")}
    for step in (0, 3):  # the run without the adapter is bit-identical: training never saw it
        np.testing.assert_array_equal(both[f"step-{step}/validation-32x32"], base[f"step-{step}/validation-32x32"])
        assert np.abs(both[f"step-{step}/validation-fast-32x32"] - base[f"step-{step}/validation-32x32"]).mean() > 1e-3
    losses = [[json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").open()] for name in ("plain", "compared")]
    assert losses[0] == losses[1]
    plain_adapter, compared_adapter = saved(tmp_path / "plain"), saved(tmp_path / "compared")
    assert set(plain_adapter) == set(compared_adapter) and not any("vtrain_validation" in k for k in compared_adapter)
    assert all(torch.equal(plain_adapter[k], compared_adapter[k]) for k in plain_adapter)
    # adapter_only (SimpleTuner's default): the validation files are the adapter's renders
    only = {**compared, "output_dir": str(tmp_path / "only"), "validation_adapter_mode": "adapter_only"}
    run(make_runner, only)
    np.testing.assert_array_equal(renders(tmp_path / "only")["step-3/validation-32x32"], both["step-3/validation-fast-32x32"])
    # strength scales the adapter: a weaker one lands between the plain and the full render
    weak = {**only, "output_dir": str(tmp_path / "weak"), "validation_adapter_strength": 0.25}
    run(make_runner, weak)
    distance = lambda a, b: float(np.abs(a - b).mean())  # noqa: E731
    weak_render = renders(tmp_path / "weak")["step-0/validation-32x32"]
    assert distance(weak_render, base["step-0/validation-32x32"]) < distance(both["step-0/validation-fast-32x32"],
                                                                             base["step-0/validation-32x32"])


def test_validation_adapter_config_renders_each_run(tinyflow_config: dict[str, Any], make_runner: Any,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = write_lora(tmp_path / "a", seed=1), write_lora(tmp_path / "b", seed=2)
    runs = {"runs": [{"label": "one", "path": str(first)},
                     {"label": "both", "paths": [str(first), str(second)], "strength": 0.5}]}
    config = {**tinyflow_config, **VALIDATION, "max_train_steps": 1, "disable_benchmark": True,
              "validation_adapter_config": json.dumps(runs)}
    run(make_runner, config)
    files = renders(tmp_path / "out")
    assert set(files) == {"step-1/validation-32x32", "step-1/validation-both-32x32"}
    assert "validation adapters (adapter_only): one (" in capsys.readouterr().out
    assert np.abs(files["step-1/validation-32x32"] - files["step-1/validation-both-32x32"]).mean() > 1e-4


@pytest.mark.parametrize("extra, key, text", [
    ({"validation_adapter_path": "x", "validation_adapter_config": '[{"path": "y"}]'}, "validation_adapter_config",
     "exclusive"),
    ({"validation_adapter_path": "./missing/lora.safetensors"}, "validation_adapter_path", "file not found"),
    ({"validation_adapter_path": "org/repo:lora.safetensors", "model_type": "full"}, "validation_adapter_path",
     "model_type lora"),
    ({"validation_adapter_config": '[{"label": "x"}]'}, "validation_adapter_config", "no \"path\""),
    ({"validation_adapter_config": '[{"path": "a", "strength": 0}]'}, "validation_adapter_config", "greater than 0"),
])
def test_bad_validation_adapter_settings_are_refused(tinyflow_config: dict[str, Any], make_runner: Any,
                                                     extra: dict[str, Any], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_runner({**tinyflow_config, **extra}).run()
    assert key in str(error.value) and text in str(error.value)


def test_sources_in_simpletuner_form(tmp_path: Path) -> None:
    from vtrain.services.validation_adapters import split_source

    lora = write_lora(tmp_path / "loras")
    assert split_source("Lightricks/LTX-2-19b-distilled-lora-384:ltx-2-19b-distilled-lora-384.safetensors") == (
        "Lightricks/LTX-2-19b-distilled-lora-384", "ltx-2-19b-distilled-lora-384.safetensors")
    assert split_source("org/repo") == ("org/repo", None)
    assert split_source(str(lora)) == (str(lora.parent), "fast.safetensors")
    assert split_source(str(lora.parent)) == (str(lora.parent), None)
