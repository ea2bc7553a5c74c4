"""Configure-time checks, exclusion lists, the 8-bit optimizers and the lowest-memory example."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from vtrain.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def _problems(make_runner: Any, config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        make_runner(config)
    return str(caught.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_dynamic_fp8_is_refused_without_capability_8_9(tinyflow_config: dict, make_runner: Any) -> None:
    text = _problems(make_runner, {**tinyflow_config, "base_model_precision": "fp8dq-torchao"})
    assert "base_model_precision: fp8dq-torchao needs a CUDA GPU of compute capability 8.9" in text
    assert "fix: use fp8-torchao (weight-only float8) or int8-quanto" in text


def test_impossible_combinations_are_refused_with_reasons(tinyflow_config: dict, make_runner: Any,
                                                           tmp_path: Path) -> None:
    text = _problems(make_runner, {**tinyflow_config, "base_model_precision": "nf4-bnb", "torch_compile": True})
    assert "nf4-bnb does not work with torch.compile" in text and "int8-quanto / int8-torchao" in text
    text = _problems(make_runner, {**tinyflow_config, "base_model_precision": "int8-quanto", "model_type": "full"})
    assert "model_type=full trains every weight" in text
    with pytest.raises(ConfigError, match="expected one of"):
        make_runner({**tinyflow_config, "base_model_precision": "int3-quanto"})


def test_missing_component_names_the_key(tinyflow_config: dict, make_runner: Any) -> None:
    runner = make_runner({**tinyflow_config, "text_encoder_2_precision": "int8-torchao"})
    bundle = runner.hooks.load_model(runner.config, runner.family)
    with pytest.raises(ConfigError, match="text_encoder_2_precision: the 'tinyflow' family has no component"):
        runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))


def test_family_exclusions_keep_sensitive_layers_in_full_precision(tinyflow_config: dict, make_runner: Any) -> None:
    runner = make_runner({**tinyflow_config, "base_model_precision": "int8-torchao"})
    bundle = runner.hooks.load_model(runner.config, runner.family)
    runner.hooks.prepare_model(bundle, runner.config, torch.device("cpu"))
    model = bundle.model
    for block in model.blocks:
        assert type(block.to_scale.weight).__module__.startswith("torchao")
    for name in ("proj_in", "proj_out", "time_embed"):
        assert type(getattr(model, name).weight) is torch.nn.Parameter, name
    assert bundle.meta["quantization"]["model"]["layers"] == 2 * 3


def test_text_encoder_is_quantised_and_the_run_trains(ltx_quant_config: dict, quanto_ready: None) -> None:
    """A whole run on the tiny LTX-Video model through the data layer's encode path, with the transformer
    in int8 and the T5 encoder in int8: loss finite, adapter written, summary lines present."""
    from vtrain import hookimpl
    from vtrain.runner import Runner
    from vtrain_ltxvideo.synthetic import SyntheticDataPlugin

    seen: dict[str, Any] = {}

    class Inspect:
        """Looks at the text encoder the run really used, after it encoded the captions."""

        name = "inspect"

        @hookimpl
        def on_run_end(self, run: Any) -> None:
            encoder = run.bundle.components["text_encoder"]
            leaves = {n.rsplit(".", 1)[-1]: type(m).__name__ for n, m in encoder.named_modules() if n}
            seen["types"] = {leaf: kind for leaf, kind in leaves.items() if leaf in ("q", "k", "v", "o", "wi", "wi_0",
                                                                                     "wi_1", "wo")}
            seen["report"] = dict(run.bundle.meta["quantization"]["text_encoder"])
            seen["kept"] = type(encoder.shared).__name__

    config = {**ltx_quant_config, "base_model_precision": "int8-quanto", "text_encoder_1_precision": "int8-quanto",
              "max_train_steps": 6, "learning_rate": 5e-3}
    runner = Runner.from_config(config, plugins=[SyntheticDataPlugin(count=4, frames=9), Inspect()])
    result = runner.run()
    losses = [json.loads(line)["loss"] for line in (Path(config["output_dir"]) / "metrics.jsonl").open()]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert (Path(config["output_dir"]) / "pytorch_lora_weights.safetensors") in result.model_paths
    # the encoder's attention and feed-forward projections are quanto layers; the output projection of the
    # feed-forward (wo, which T5 keeps in float32) and the embedding stay plain
    assert seen["types"].pop("wo") == "Linear"
    assert set(seen["types"].values()) == {"QLinear"} and {"q", "k", "v", "o"} <= set(seen["types"]), seen["types"]
    assert seen["report"]["precision"] == "int8-quanto" and seen["report"]["layers"] > 0
    assert seen["report"]["bytes_after"] < seen["report"]["bytes_before"]
    assert seen["kept"] == "Embedding"


@pytest.mark.parametrize("name", ["bnb-adamw8bit", "bnb-adamw8bit-paged", "bnb-lion8bit", "bnb-lion8bit-paged"])
def test_8bit_optimizers_train(name: str, tinyflow_config: dict, make_runner: Any,
                               caplog: pytest.LogCaptureFixture) -> None:
    import bitsandbytes.optim as bnb_optim

    lr = 3e-3 if "adamw" in name else 1.5e-3
    runner = make_runner({**tinyflow_config, "optimizer": name, "learning_rate": lr, "max_train_steps": 24})
    factory, _help = runner.optimizers[name]
    param = torch.nn.Parameter(torch.zeros(4096))
    with caplog.at_level(logging.WARNING, logger="vtrain.quant"):
        optimizer = factory([param], runner.config, {})
    paged = name.endswith("-paged")
    if paged and not torch.cuda.is_available():
        assert not type(optimizer).__name__.startswith("Paged")
        assert isinstance(optimizer, bnb_optim.AdamW8bit if "adamw" in name else bnb_optim.Lion8bit)
    result = runner.run()
    losses = [json.loads(line)["loss"] for line in (Path(tinyflow_config["output_dir"]) / "metrics.jsonl").open()]
    assert result.steps == 24
    assert sum(losses[-6:]) / 6 < 0.9 * sum(losses[:6]) / 6, losses


def test_paged_fallback_notice_is_given_once(tinyflow_config: dict, make_runner: Any,
                                             caplog: pytest.LogCaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("paged optimizers run as such on CUDA")
    from vtrain_quant import optimizers

    optimizers._warned.discard("bnb-lion8bit-paged")
    runner = make_runner({**tinyflow_config, "optimizer": "bnb-lion8bit-paged"})
    factory, _help = runner.optimizers["bnb-lion8bit-paged"]
    with caplog.at_level(logging.WARNING, logger="vtrain.quant"):
        for _ in range(2):
            factory([torch.nn.Parameter(torch.zeros(8))], runner.config, {})
    notices = [r for r in caplog.records if "paged optimizer state needs CUDA" in r.getMessage()]
    assert len(notices) == 1


def test_lowest_memory_example_validates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The example as shipped, run from a project folder that holds its dataset folder."""
    import shutil

    from vtrain.runner import Runner

    shutil.copytree(REPO / "examples" / "lowest_memory", tmp_path / "examples" / "lowest_memory")
    (tmp_path / "datasets" / "my-clips").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    runner = Runner.from_config("examples/lowest_memory/config.json")
    config = runner.config
    assert config.base_model_precision == "nf4-bnb" and config.optimizer == "bnb-lion8bit-paged"
    assert config.train_batch_size == 1 and config.gradient_accumulation_steps == 1
    assert config.gradient_checkpointing is True and config.resolution == 480
    datasets = json.loads(Path(config.data_backend_config).read_text())
    assert {d.get("resolution") for d in datasets if d.get("dataset_type") == "video"} == {480}
