"""Reading SimpleTuner-style configs: every key accepted, typed, traced, or refused clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vtrain.errors import ConfigError
from vtrain.runner import Runner

FIXTURES = Path(__file__).parent.parent / "fixtures"
VTRAIN = [sys.executable, "-m", "vtrain"]
ALLOWED_REFUSALS = ("not supported yet", "which is not installed", "is installed but does not register")


def _problems_by_key(error: ConfigError) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in error.problems:
        key = problem.where.split(": ")[-1]
        found.setdefault(key, []).append(problem.message)
    return found


def _classify(config: dict, **kwargs) -> dict[str, list[str]]:
    try:
        Runner.from_config(config, **kwargs)
    except ConfigError as error:
        return _problems_by_key(error)
    return {}


def _with_local_paths(config: dict, tmp_path: Path) -> dict:
    """The source's paths pointed at local files, as a user does ("paths changed")."""
    examples = Path(__file__).parents[2] / "examples" / "ltxvideo"
    backends = json.loads((FIXTURES / "source_multidatabackend.json").read_text())
    for backend in backends:
        if "instance_data_dir" in backend:
            folder = tmp_path / backend["instance_data_dir"]
            folder.mkdir(parents=True)
            backend["instance_data_dir"] = str(folder)
    (tmp_path / "multidatabackend.json").write_text(json.dumps(backends))
    paths = {"data_backend_config": tmp_path / "multidatabackend.json",
             "lycoris_config": examples / "lycoris_config.json", "webhook_config": examples / "webhook.json"}
    result = {key: (str(paths[key]) if key in paths else value) for key, value in config.items()}
    if result.get("validation_preview"):  # the source: previews require a webhook configuration
        result["webhook_config"] = str(paths["webhook_config"])
    return result


@pytest.mark.parametrize("fixture", ["source_config.json", "source_extra_keys.json"])
def test_every_source_key_is_accepted_or_refused_by_name(fixture: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    config = _with_local_paths(json.loads((FIXTURES / fixture).read_text()), tmp_path)
    problems = _classify(config)
    # the hub client reads HF_HUB_OFFLINE once, at import: in this test process uploads stay impossible
    environment = {"push_to_hub": ("HF_HUB_OFFLINE is set",)}
    for key in config:
        for message in problems.get(key.lstrip("-"), []):
            allowed = ALLOWED_REFUSALS + environment.get(key.lstrip("-"), ())
            assert any(phrase in message for phrase in allowed), f"{key}: {message}"
    assert not any("unknown key" in m for ms in problems.values() for m in ms), problems


def test_source_keys_of_a_missing_plugin_name_the_distribution() -> None:
    config = json.loads((FIXTURES / "source_config.json").read_text())
    problems = _classify(config, blocked=["quant"])
    assert "vtrain-quant" in problems["base_model_precision"][0]
    assert "vtrain-quant" in problems["quantize_via"][0]


def test_values_as_strings_or_native_json_and_dashed_keys(tinyflow_config: dict) -> None:
    del tinyflow_config["train_batch_size"], tinyflow_config["max_grad_norm"]  # given dashed below
    tinyflow_config.update({"--train_batch_size": "4", "gradient_checkpointing": "true", "learning_rate": "5e-4",
                            "--max_grad_norm": 0, "validation_resolution": "64x32,32x32"})
    config = Runner.from_config(tinyflow_config).config
    assert config.train_batch_size == 4
    assert config.gradient_checkpointing is True
    assert config.learning_rate == 5e-4
    assert config.max_grad_norm == 0.0
    assert config.validation_resolution == ["64x32", "32x32"]
    assert config.source("train_batch_size") == "Runner(config)"
    assert config.source("seed") == "Runner(config)" and config.source("lora_alpha") == "default"


def test_overrides_win_and_are_traced(tmp_path: Path, tinyflow_config: dict) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tinyflow_config))
    config = Runner.from_config(path, overrides={"seed": 99}).config
    assert config.seed == 99 and config.source("seed") == "Runner(overrides)"
    assert config.source("learning_rate") == str(path)


def test_all_problems_reported_together(tinyflow_config: dict) -> None:
    tinyflow_config.update({"learnin_rate": 1e-4, "train_batch_size": "many", "lora_dropout": 3,
                            "mixed_precision": "fp64", "flow_schedule_shift": 2.0, "flow_schedule_auto_shift": True})
    with pytest.raises(ConfigError) as caught:
        Runner.from_config(tinyflow_config)
    text = str(caught.value)
    assert "learnin_rate: unknown key" in text and "did you mean learning_rate" in text
    assert "train_batch_size: expected a whole number" in text
    assert "lora_dropout: must be less than 1" in text
    assert "mixed_precision: expected one of no, fp16, bf16" in text
    # contradictions are checked once the single keys are valid; they come in a second pass
    tinyflow_config.update({"learning_rate": 1e-4, "train_batch_size": 2, "lora_dropout": 0.1, "mixed_precision": "no"})
    del tinyflow_config["learnin_rate"]
    with pytest.raises(ConfigError, match="contradict"):
        Runner.from_config(tinyflow_config)


def test_family_specific_key_on_another_family(tinyflow_config: dict) -> None:
    tinyflow_config["pretrained_vae_model_name_or_path"] = "some/vae"
    problems = _classify(tinyflow_config)
    assert any("ltxvideo" in m for m in problems["pretrained_vae_model_name_or_path"])


def test_unknown_family_and_optimizer(tinyflow_config: dict) -> None:
    tinyflow_config.update(model_family="tinyflw", optimizer="adamw_bf16x")
    with pytest.raises(ConfigError, match="(?s)unknown model family 'tinyflw'.*tinyflow"):
        Runner.from_config(tinyflow_config)
    tinyflow_config.update(model_family="tinyflow", optimizer="bnb-adamw8bit")
    with pytest.raises(ConfigError, match="vtrain-quant"):
        Runner.from_config(tinyflow_config, blocked=["quant"])


def test_missing_files_are_named(tinyflow_config: dict, tmp_path: Path) -> None:
    tinyflow_config.update(user_prompt_library=str(tmp_path / "nope.json"), resume_from_checkpoint=str(tmp_path / "ckpt"))
    with pytest.raises(ConfigError) as caught:
        Runner.from_config(tinyflow_config)
    assert "nope.json" in str(caught.value) and "checkpoint folder not found" in str(caught.value)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*VTRAIN, *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"model_family": "tinyflow", "lerning_rate": 1}', "did you mean learning_rate"),
        ('{"model_family": "tinyflow", "max_train_steps": -1}', "must be at least 0"),
        ('{"model_family": "tinyflow", "max_train_steps": 0, "num_train_epochs": 0}', "no length"),
    ],
)
def test_cli_bad_input_exit_code_2_without_traceback(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    proc = _cli("config", "validate", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert f"{path}: " in proc.stderr, proc.stderr  # every problem names the file to fix
    assert "Traceback" not in proc.stderr


def test_cli_missing_config_file(tmp_path: Path) -> None:
    proc = _cli("run", "--family", "tinyflow", "--config", str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "missing.json: config file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_config_show_traces_sources(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_family": "tinyflow", "--learning_rate": "2e-4", "max_train_steps": 5}))
    proc = _cli("config", "show", "--config", str(path), "--seed", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["learning_rate"] == {"value": 2e-4, "source": str(path)}
    assert shown["seed"] == {"value": 5, "source": "command line"}
    assert shown["lora_rank"]["source"] == "default"


def test_options_reference_page_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain.docgen import options_markdown
    from vtrain.runner import load_plugins

    monkeypatch.delenv("VTRAIN_PLUGINS", raising=False)  # the page documents a user's install: no test plugins
    _host, registry, _f, _o = load_plugins(blocked=["example"])
    page = Path(__file__).parents[2] / "docs" / "options.md"
    assert page.read_text() == options_markdown(registry), "docs/options.md is stale: run `make docs`"


def test_catalog_matches_bundled_plugins() -> None:
    from vtrain import catalog
    from vtrain.runner import load_plugins

    _host, registry, _f, _o = load_plugins()
    for dist in catalog.KNOWN_DISTRIBUTIONS:
        plugin = dist.distribution.removeprefix("vtrain-")
        declared = {o.name for o in registry.by_owner(plugin)}
        if not declared:
            continue
        listed = {k for k in declared if k in dist.keys or k.startswith(dist.key_prefixes or ("\0",))}
        assert declared == listed, f"catalog.py is missing keys of {dist.distribution}: {declared - listed}"
        assert set(dist.keys) <= declared, f"catalog.py lists keys {dist.distribution} does not declare: {set(dist.keys) - declared}"


def test_fp16_without_cuda_is_refused_at_configure_time(tinyflow_config: dict) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    tinyflow_config["mixed_precision"] = "fp16"
    with pytest.raises(ConfigError, match="fp16 mixed precision needs a CUDA device"):
        Runner.from_config(tinyflow_config)


def test_every_hook_is_documented_and_the_reference_is_current() -> None:
    import inspect

    from vtrain import hookspecs
    from vtrain.docgen import hooks_markdown

    specs = [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "vtrain_spec")]
    assert len(specs) >= 20
    assert all(inspect.getdoc(f) for f in specs), [f.__name__ for f in specs if not inspect.getdoc(f)]
    page = Path(__file__).parents[2] / "docs" / "hooks.md"
    assert page.read_text() == hooks_markdown(), "docs/hooks.md is stale: run `make docs`"


def test_fractional_restart_cycles_are_refused(tinyflow_config: dict) -> None:
    tinyflow_config.update(lr_scheduler="cosine_with_restarts", lr_num_cycles=1.5)
    with pytest.raises(ConfigError, match="lr_num_cycles: cosine_with_restarts takes a whole number"):
        Runner.from_config(tinyflow_config)
    tinyflow_config.update(lr_scheduler="cosine")
    assert Runner.from_config(tinyflow_config).config.lr_num_cycles == 1.5
