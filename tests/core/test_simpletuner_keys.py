"""SimpleTuner configs read as SimpleTuner reads them: aliases, keys accepted with no effect (and said so),
refusals with the reason, "unknown key" only for keys SimpleTuner does not know either; option bounds
that would make a run meaningless; family defaults and where they came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vtrain.errors import ConfigError
from vtrain.runner import Runner
from vtrain.simpletuner import ALIASES, NO_EFFECT, REFUSED
from vtrain.simpletuner_keys import SIMPLETUNER_KEYS

ROOT = Path(__file__).parents[2]
LEGACY = {"validation_steps", "checkpointing_steps", "save_total_limit"}  # SimpleTuner's legacy-key handlers

# SimpleTuner's own LTX-Video example (simpletuner/examples/ltxvideo-0.9.5-t2v.peft-lora/config.json), as published.
EXAMPLE_CONFIG = {
    "base_model_precision": "int8-torchao", "caption_dropout_probability": 0.1, "checkpoint_step_interval": 100,
    "checkpoints_total_limit": 5, "compress_disk_cache": True,
    "data_backend_config": "config/examples/multidatabackend-small-video-480p+2s24fps.json",
    "disable_bucket_pruning": True, "gradient_checkpointing": True,
    "hub_model_id": "simpletuner-example-ltxvideo-0-9-5-t2v-peft-lora", "learning_rate": 6e-5, "lora_rank": 16,
    "lora_type": "standard", "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 50, "max_grad_norm": 0.1,
    "max_train_steps": 200, "mixed_precision": "bf16", "model_family": "ltxvideo", "model_flavour": "0.9.5",
    "pretrained_model_name_or_path": "Lightricks/LTX-Video-0.9.5", "model_type": "lora", "num_train_epochs": 0,
    "optimizer": "adamw_bf16", "output_dir": "output/examples/ltxvideo-0.9.5-t2v.peft-lora",
    "push_checkpoints_to_hub": False, "push_to_hub": False, "quantize_via": "cpu", "report_to": "none",
    "resolution": 480, "resolution_type": "pixel_area", "seed": 42, "train_batch_size": 1, "use_ema": False,
    "vae_batch_size": 1, "vae_enable_slicing": True, "vae_enable_tiling": True, "validation_guidance": 5.0,
    "validation_negative_prompt": "blurry, cropped, ugly", "validation_num_inference_steps": 40,
    "validation_num_video_frames": 49, "validation_prompt": "domokun holding a sign",
    "validation_prompt_library": False, "validation_resolution": "768x512", "validation_seed": 42,
    "validation_steps": 50,
}
# Its dataloader (simpletuner/examples/multidatabackend-small-video-480p+2s24fps.json), as published.
EXAMPLE_DATALOADER = [
    {"id": "dreambooth-480", "type": "huggingface", "dataset_type": "video",
     "dataset_name": "sayakpaul/video-dataset-disney-organized", "crop": False, "crop_style": "random",
     "crop_aspect": "square", "minimum_image_size": 128, "maximum_image_size": 480, "target_downsample_size": 480,
     "resolution": 480, "resolution_type": "pixel_area", "metadata_backend": "huggingface",
     "caption_strategy": "huggingface", "video": {"num_frames": 48},
     "huggingface": {"video_column": "video", "caption_column": "prompt"},
     "cache_dir_vae": "cache/vae/{model_family}/dreambooth-480"},
    {"id": "alt-embed-cache", "dataset_type": "text_embeds", "default": True, "type": "local",
     "cache_dir": "cache/text/{model_family}"},
]
# The local-folder dataloader of SimpleTuner's LTX-Video quickstart, as published (minimum_image_size 0 added).
QUICKSTART_DATALOADER = [
    {"id": "disney-black-and-white", "type": "local", "dataset_type": "video", "crop": False, "resolution": 480,
     "minimum_image_size": 0, "maximum_image_size": 480, "target_downsample_size": 480,
     "resolution_type": "pixel_area", "cache_dir_vae": "cache/vae/{model_family}/disney-black-and-white",
     "instance_data_dir": "datasets/disney-black-and-white", "disabled": False, "caption_strategy": "textfile",
     "metadata_backend": "discovery", "repeats": 0, "hash_filenames": True,
     "video": {"num_frames": 125, "min_frames": 125, "bucket_strategy": "aspect_ratio"}},
    {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
     "cache_dir": "cache/text/ltxvideo", "disabled": False, "write_batch_size": 128},
]


def _problems(config: dict) -> dict[str, list[str]]:
    try:
        Runner.from_config(config)
    except ConfigError as error:
        found: dict[str, list[str]] = {}
        for problem in error.problems:
            found.setdefault(problem.where.split(": ", 1)[-1], []).append(f"{problem.message} | {problem.fix}")
        return found
    return {}


def _tinyflow(**values) -> dict:
    return {"model_family": "tinyflow", "max_train_steps": 1, **values}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets" / "disney-black-and-white").mkdir(parents=True)
    return tmp_path


def test_example_config_with_quickstart_dataloader_is_accepted(in_tmp: Path) -> None:
    (in_tmp / "mdb.json").write_text(json.dumps(QUICKSTART_DATALOADER))
    runner = Runner.from_config({**EXAMPLE_CONFIG, "data_backend_config": "mdb.json"})
    config = runner.config
    assert config.validation_step_interval == 50 and config.source("validation_step_interval").endswith(
        "(as validation_steps)")
    assert config.vae_enable_tiling and config.vae_enable_slicing  # real LTX-Video options, not ignored
    assert any("model_flavour" in note and "no effect" in note for note in config.notices)
    assert config.max_grad_norm == 0.1 and config.grad_clip_method == "value"  # SimpleTuner's keys read exactly
    from vtrain.data.spec import parse_backends

    plan = parse_backends("mdb.json", config)
    assert plan.media[0].minimum_image_size is None  # 0 means "no minimum"
    assert str(plan.media[0].cache_dir_vae) == "cache/vae/ltxvideo/disney-black-and-white"


def test_example_dataloader_is_refused_with_reasons(in_tmp: Path) -> None:
    (in_tmp / "mdb.json").write_text(json.dumps(EXAMPLE_DATALOADER))
    problems = _problems({**EXAMPLE_CONFIG, "data_backend_config": "mdb.json"})
    text = json.dumps(problems)
    assert "huggingface backend" in problems["dataset 'dreambooth-480'.dataset_name"][0]
    assert "huggingface backend" in problems["dataset 'dreambooth-480'.huggingface"][0]
    assert "not supported" in problems["dataset 'dreambooth-480'.type"][0]
    assert "unknown key" not in text
    assert not [k for k in problems if not k.startswith("dataset")], problems  # the top-level keys all pass


def test_top_level_minimum_image_size_zero_means_no_minimum(in_tmp: Path) -> None:
    backends = [dict(QUICKSTART_DATALOADER[0]), QUICKSTART_DATALOADER[1]]
    del backends[0]["minimum_image_size"]
    (in_tmp / "mdb.json").write_text(json.dumps(backends))
    runner = Runner.from_config({**EXAMPLE_CONFIG, "data_backend_config": "mdb.json", "minimum_image_size": 0})
    from vtrain.data.spec import parse_backends

    assert parse_backends("mdb.json", runner.config).media[0].minimum_image_size is None
    assert "minimum_image_size" in _problems({**EXAMPLE_CONFIG, "data_backend_config": "mdb.json",
                                              "minimum_image_size": -1})


@pytest.mark.parametrize("alias, target, value, expected", [
    ("validation_steps", "validation_step_interval", 7, 7),
    ("checkpointing_steps", "checkpoint_step_interval", 9, 9),
    ("save_total_limit", "checkpoints_total_limit", 3, 3),
    ("optimizer_beta1", "adam_beta1", 0.8, 0.8),
    ("optimizer_beta2", "adam_beta2", 0.95, 0.95),
    ("flow_sigmoid_scale", "flow_logit_std", 1.5, 1.5),
    ("flow_use_uniform_schedule", "flow_sigma_sampling", True, "uniform"),
])
def test_each_alias_sets_its_key(alias: str, target: str, value, expected) -> None:
    config = Runner.from_config(_tinyflow(**{alias: value})).config
    assert config[target] == expected
    assert config.source(target).endswith(f"(as {alias})")


def test_ltx_alias_and_keys(in_tmp: Path) -> None:
    config = Runner.from_config({**EXAMPLE_CONFIG, "data_backend_config": None, "ltx_i2v_prob": 0.3,
                                 "ltx_train_mode": "t2v"}).config
    assert config.i2v_conditioning_probability == 0.3 and config.ltx_train_mode == "t2v"
    problems = _problems({**EXAMPLE_CONFIG, "data_backend_config": None, "ltx_partial_noise_fraction": 0.2})
    assert "clean" in problems["ltx_partial_noise_fraction"][0]


def test_no_effect_keys_are_accepted_and_reported() -> None:
    config = Runner.from_config(_tinyflow(logging_dir="logs", vae_dtype="fp32", noise_offset=0.1,
                                          flux_guidance_value=1.0)).config
    notes = "\n".join(config.notices)
    for key in ("logging_dir", "vae_dtype", "noise_offset", "flux_guidance_value"):
        assert f"{key}: accepted, no effect in vtrain" in notes, key


def test_unimplemented_simpletuner_values_are_refused_with_the_reason() -> None:
    problems = _problems(_tinyflow(noise_offset=0.5, flux_guidance_value=3.5, lora_format="comfyui",
                                   definitely_not_a_key=1))
    assert "not implemented in vtrain" in problems["noise_offset"][0]
    assert "flux models" in problems["flux_guidance_value"][0]
    assert "diffusers-format" in problems["lora_format"][0]
    assert problems["definitely_not_a_key"][0].startswith("unknown key")


def test_tables_name_only_simpletuner_keys() -> None:
    for key in [*NO_EFFECT, *REFUSED, *ALIASES]:
        assert key in SIMPLETUNER_KEYS or key in LEGACY, key
    for key, target in ALIASES.items():
        assert Runner.from_config(_tinyflow()).registry.canonical(target) == target, (key, target)


def test_differences_page_lists_every_key() -> None:
    from vtrain.data.spec import SIMPLETUNER_DATASET_NO_EFFECT, SIMPLETUNER_DATASET_REFUSED

    page = (ROOT / "docs" / "differences-from-simpletuner.md").read_text()
    keys = [*NO_EFFECT, *REFUSED, *ALIASES, *SIMPLETUNER_DATASET_NO_EFFECT, *SIMPLETUNER_DATASET_REFUSED,
            "ltx_i2v_prob", "ltx_train_mode", "ltx_protect_first_frame", "ltx_partial_noise_fraction",
            "minimum_image_size", "flow_schedule_shift", "max_grad_norm", "grad_clip_method", "framerate",
            "base_model_default_dtype", "optimizer"]
    missing = [key for key in keys if f"`{key}`" not in page]
    assert not missing, f"docs/differences-from-simpletuner.md does not mention {missing}"


@pytest.mark.parametrize("key, bad, good", [
    ("flow_schedule_shift", 0, 1.0), ("flow_schedule_shift", -2, 3.0), ("learning_rate", 0, 1e-4),
    ("adam_beta1", 1.0, 0.9), ("adam_beta2", 1.0, 0.99), ("adam_epsilon", 0, 1e-8), ("lr_num_cycles", 0, 1),
    ("flow_logit_std", 0, 1.0), ("resolution", 0, 512), ("minimum_image_size", -1, 0),
    ("maximum_image_size", 0, 512), ("target_downsample_size", 0, 512), ("lora_dropout", 1.0, 0.1),
    ("ema_decay", 1.0, 0.999),
])
def test_meaningless_boundary_values_are_refused(key: str, bad, good) -> None:
    extra = {"use_ema": True} if key.startswith("ema_") else {}
    problems = _problems(_tinyflow(**{key: bad}, **extra))
    assert key in problems, problems
    assert "must be" in problems[key][0]
    assert key not in _problems(_tinyflow(**{key: good}, **extra))


def test_family_defaults_apply_only_when_unset_and_show_their_source() -> None:
    config = Runner.from_config({**EXAMPLE_CONFIG, "data_backend_config": None, "max_grad_norm": None}).config
    # the example sets max_grad_norm, so only the shift group applies
    assert config.flow_schedule_auto_shift and config.source("flow_schedule_auto_shift") == "family default (ltxvideo)"
    bare = {k: v for k, v in EXAMPLE_CONFIG.items() if k not in ("max_grad_norm", "data_backend_config")}
    config = Runner.from_config(bare).config
    assert (config.grad_clip_method, config.max_grad_norm) == ("norm", 1.0)
    assert config.source("max_grad_norm") == "family default (ltxvideo)"
    assert not config.explicitly_set("max_grad_norm")
    config = Runner.from_config({**bare, "flow_schedule_shift": 1}).config  # the source's explicit shift wins
    assert config.flow_schedule_shift == 1.0 and not config.flow_schedule_auto_shift
    config = Runner.from_config({**bare, "grad_clip_method": "value"}).config
    assert (config.grad_clip_method, config.max_grad_norm) == ("value", 2.0)


def test_config_show_names_the_family_default(tmp_path: Path) -> None:
    bare = {k: v for k, v in EXAMPLE_CONFIG.items() if k not in ("max_grad_norm", "data_backend_config")}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(bare))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "vtrain", "config", "show", "--config", str(path)],
                         capture_output=True, text=True, env=env, timeout=120).stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for key in ("flow_schedule_auto_shift", "grad_clip_method", "max_grad_norm"):
        assert "[family default (ltxvideo)]" in lines[key], lines[key]
    assert "accepted, no effect in vtrain" in out  # model_flavour's notice


def test_base_dtype_defaults_by_device() -> None:
    from vtrain.runner import resolve_default_dtype

    for accelerator, expected in ((False, "fp32"), (True, "bf16")):
        config = Runner.from_config(_tinyflow()).config
        assert config.base_model_default_dtype is None
        resolve_default_dtype(config, accelerator)
        assert config.base_model_default_dtype == expected and config.source("base_model_default_dtype").startswith(
            "auto")
    config = Runner.from_config(_tinyflow(base_model_default_dtype="bf16")).config
    resolve_default_dtype(config, False)
    assert config.base_model_default_dtype == "bf16"
