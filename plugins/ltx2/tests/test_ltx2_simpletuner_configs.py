"""SimpleTuner's LTX-2 configs as its users have them train to the end with ``vtrain run --config config.json``.

The shapes are SimpleTuner's (simpletuner/examples/ltxvideo2-19b-t2v.peft-lora/config.json, the quick-start's
group-offload block and its lowest-VRAM 7900XTX config, and the quick-start's video dataloader). Only what
must change is changed: paths point at the tiny LTX-2 model (as a combined single-file checkpoint, the way
SimpleTuner loads model_flavour dev) and at generated clips with sound, and runs are 2 updates long. No
``--family``: ``model_family: ltxvideo2`` picks the ltx2 family.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_ltx2_simpletuner import fake_hub_cache, hub_cache  # noqa: F401  (the fake hub cache fixture)

# simpletuner/examples/ltxvideo2-19b-t2v.peft-lora/config.json, as published
BASIC = {
    "base_model_precision": "int8-torchao", "musubi_blocks_to_swap": 45, "caption_dropout_probability": 0.1,
    "checkpoint_step_interval": 100, "checkpoints_total_limit": 5, "compress_disk_cache": True,
    "data_backend_config": "config/examples/multidatabackend-small-video-480p+2s24fps.json",
    "disable_benchmark": True, "gradient_checkpointing": True, "hub_model_id": "simpletuner-ltxvideo2-19b-t2v-lora-test",
    "learning_rate": 6e-5, "lora_rank": 16, "lora_type": "standard", "lr_scheduler": "constant_with_warmup",
    "lr_warmup_steps": 50, "max_grad_norm": 0.1, "max_train_steps": 200, "minimum_image_size": 0,
    "mixed_precision": "bf16", "model_family": "ltxvideo2", "model_type": "lora", "num_train_epochs": 0,
    "optimizer": "adamw_bf16", "output_dir": "output/examples/ltxvideo2-19b-t2v.peft-lora", "report_to": "none",
    "resolution": 480, "resolution_type": "pixel_area", "resume_from_checkpoint": "latest", "seed": 42,
    "tracker_project_name": "lora-training", "tracker_run_name": "example-training-run", "train_batch_size": 2,
    "vae_batch_size": 1, "vae_enable_tiling": True, "vae_enable_slicing": True, "validation_guidance": 5.0,
    "validation_negative_prompt": "blurry, cropped, ugly", "validation_num_inference_steps": 40,
    "validation_num_video_frames": 81, "validation_prompt": "🟫 is holding a sign that says hello world from ltxvideo2",
    "validation_prompt_library": False, "validation_resolution": "768x512", "validation_seed": 42,
    "validation_steps": 50,
}
# the quick-start's "Memory offloading (Critical)" block, added to a config
GROUP_OFFLOAD = {"enable_group_offload": True, "group_offload_type": "block_level", "group_offload_blocks_per_group": 1,
                 "group_offload_use_stream": True}
# the quick-start's "Lowest VRAM use config (7900XTX)", as published
LOW_VRAM = {
    "base_model_precision": "int8-quanto", "checkpoint_step_interval": 100,
    "data_backend_config": "config/ltx2/multidatabackend.json", "disable_benchmark": True, "dynamo_mode": "",
    "evaluation_type": "none", "hub_model_id": "simpletuner-ltxvideo2-19b-t2v-lora-test", "learning_rate": 0.00006,
    "lr_warmup_steps": 50, "lycoris_config": "config/lycoris_config.json", "max_grad_norm": 0.1, "max_train_steps": 200,
    "minimum_image_size": 0, "model_family": "ltxvideo2", "model_flavour": "dev", "model_type": "lora",
    "num_train_epochs": 0, "offload_during_startup": True, "optimizer": "adamw_bf16",
    "output_dir": "output/examples/ltxvideo2-19b-t2v.peft-lora", "override_dataset_config": True, "ramtorch": True,
    "ramtorch_text_encoder": True, "report_to": "none", "resolution": 480, "scheduled_sampling_reflexflow": False,
    "seed": 42, "skip_file_discovery": "", "tracker_project_name": "lora-training",
    "tracker_run_name": "example-training-run", "train_batch_size": 2, "vae_batch_size": 1, "vae_enable_patch_conv": True,
    "vae_enable_slicing": True, "vae_enable_temporal_roll": True, "vae_enable_tiling": True, "validation_disable": True,
    "validation_disable_unconditional": True, "validation_guidance": 5, "validation_num_inference_steps": 40,
    "validation_num_video_frames": 81, "validation_prompt": "🟫 is holding a sign that says hello world from ltxvideo2",
    "validation_resolution": "768x512", "validation_seed": 42, "validation_using_datasets": False,
}
# the quick-start's video dataloader, as published
QUICKSTART_DATALOADER = [
    {"id": "my-video-dataset", "type": "local", "dataset_type": "video", "instance_data_dir": "datasets/videos",
     "caption_strategy": "textfile", "resolution": 512,
     "video": {"num_frames": 61, "min_frames": 61, "frame_rate": 25, "bucket_strategy": "aspect_ratio"},
     "repeats": 10},
    {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
     "cache_dir": "cache/text/ltxvideo2", "disabled": False},
]
REPO = Path(__file__).resolve().parents[3]
LTX2_HEADING = "\n## LTX-2 (`model_family: ltxvideo2`)"
# the example of the docs' LTX-2 sections: BASIC's keys, the model and dataloader pointed at local files
DOC_EXAMPLE = json.loads((REPO / "docs" / "differences-from-simpletuner.md").read_text(encoding="utf-8")
                         .split(LTX2_HEADING, 1)[1].split("```json\n", 1)[1].split("```", 1)[0])


@pytest.fixture
def project(ltx2_tiny_dir: Path, hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """A project folder as the quick-start lays it out: config/, datasets/videos with captioned clips with sound,
    the model as a combined checkpoint; Lightricks/LTX-2 (configs, Gemma) in the hub cache."""
    from vtrain_ltx2.combined import write_combined_checkpoint
    from vtrain_ltx2.synthetic import clip_specs, write_av_clip

    monkeypatch.chdir(tmp_path)
    fake_hub_cache(hub_cache, "Lightricks/LTX-2", {".": ltx2_tiny_dir})
    write_combined_checkpoint(ltx2_tiny_dir, tmp_path / "models" / "ltx-2-19b-dev.safetensors")
    for index, spec in enumerate(clip_specs(2)):
        clip = write_av_clip(tmp_path / "datasets" / "videos" / f"clip_{index}.mp4", spec, 61, 96, 128, fps=25)
        clip.with_suffix(".txt").write_text(spec.caption)
    (tmp_path / "config" / "ltx2").mkdir(parents=True)
    (tmp_path / "config" / "ltx2" / "multidatabackend.json").write_text(json.dumps(_dataloader()))
    (tmp_path / "config" / "lycoris_config.json").write_text(
        (REPO / "examples" / "ltxvideo" / "lycoris_config.json").read_text())
    return tmp_path


def _dataloader() -> list[dict[str, Any]]:
    """The quick-start's dataloader as published (it sets no cache_dir_vae: vtrain picks one and says so)."""
    return json.loads(json.dumps(QUICKSTART_DATALOADER))


def _written(project: Path, config: dict[str, Any]) -> Path:
    """The config with what must change for a CPU test: the model path, the dataloader, 2 updates."""
    config = {**config, "pretrained_model_name_or_path": "models/ltx-2-19b-dev.safetensors",
              "data_backend_config": "config/ltx2/multidatabackend.json", "max_train_steps": 2,
              "validation_num_inference_steps": 2, "validation_num_video_frames": 9, "validation_resolution": "64x64"}
    path = project / "config" / "config.json"
    path.write_text(json.dumps(config, ensure_ascii=False))
    return path


def _run(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    from vtrain.cli import main

    assert main(["run", "--config", str(path)]) == 0, capsys.readouterr()
    return capsys.readouterr().out


def _doc_blocks(page: str, heading: str, language: str) -> list[str]:
    text = (REPO / "docs" / page).read_text(encoding="utf-8").split(heading, 1)[1].split("\n## ", 1)[0]
    return [part.split("```", 1)[0] for part in text.split(f"```{language}\n")[1:]]


def test_the_docs_ltx2_examples_are_simpletuners_example() -> None:
    """The config in the LTX-2 sections of docs/differences-from-simpletuner.md and docs/ja/quickstart.md is the
    published example with the model and dataloader paths pointed at local files (it trains in the next test)."""
    english = json.loads(_doc_blocks("differences-from-simpletuner.md", LTX2_HEADING, "json")[0])
    japanese = json.loads(_doc_blocks("ja/quickstart.md", "## 5. SimpleTuner の LTX-2", "json")[0])
    assert english == japanese == DOC_EXAMPLE
    pointed = {"model_flavour", "pretrained_model_name_or_path", "data_backend_config"}
    assert {k: v for k, v in DOC_EXAMPLE.items() if k not in pointed}.items() <= BASIC.items()
    commands = _doc_blocks("ja/quickstart.md", "## 5. SimpleTuner の LTX-2", "bash")[0].split("\n")
    assert commands[:2] == ["vtrain config validate config/config.json", "vtrain run --config config/config.json"]


def test_basic_lora_example_trains(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vtrain.cli import main

    path = _written(project, {**BASIC, **DOC_EXAMPLE})
    assert main(["config", "validate", "config/config.json"]) == 0
    out = _run(path, capsys)
    output = project / "output" / "examples" / "ltxvideo2-19b-t2v.peft-lora"
    assert (output / "pytorch_lora_weights.safetensors").is_file() and (output / "checkpoint-2").is_dir()
    assert "family        ltx2" in out and "'ltxvideo2' is read as the 'ltx2' family" in out
    assert "of the last 45 blocks (block swap)" in out  # musubi_blocks_to_swap through group offload
    assert "audio groups added: the data has sound" in out  # the clips have sound: audio projections are trained
    assert "combined checkpoint" in out and "tracker_project_name: accepted, no effect" in out
    info = json.loads((output / "run_info.json").read_text())
    assert info["config"]["base_model_precision"] == "int8-torchao" and info["config"]["vae_enable_tiling"] is True


def test_group_offload_quickstart_block_trains(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(_written(project, {**BASIC, **GROUP_OFFLOAD}), capsys)
    assert "group offload block_level, 1 block(s) per group" in out
    assert "group_offload_use_stream: accepted, no effect" in out and "musubi_blocks_to_swap: accepted, no effect" in out


def test_lowest_vram_config_trains_once_its_unavailable_keys_are_replaced(project: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The 7900XTX config: RamTorch is refused naming the alternatives; with those two keys removed it trains:
    int8-quanto, the four VAE switches, offload_during_startup, validation_disable, override_dataset_config and
    skip_file_discovery as notices."""
    from vtrain.errors import ConfigError
    from vtrain.runner import Runner

    path = _written(project, LOW_VRAM)
    with pytest.raises(ConfigError) as refused:
        Runner.from_config(str(path))
    problems = {p.where.split(": ", 1)[-1]: p.fix for p in refused.value.problems}
    assert "group_offload_type leaf_level" in problems["ramtorch"]
    assert "text_encoder_1_precision" in problems["ramtorch_text_encoder"]
    assert set(problems) == {"ramtorch", "ramtorch_text_encoder"}
    config = {k: v for k, v in LOW_VRAM.items() if k not in problems}
    # bf16 base weights, SimpleTuner's default (vtrain's CPU default is fp32, which quanto's int8 matmul refuses
    # under bf16 autocast on the CPU)
    out = _run(_written(project, {**config, "base_model_default_dtype": "bf16"}), capsys)
    output = project / "output" / "examples" / "ltxvideo2-19b-t2v.peft-lora"
    assert (output / "pytorch_lora_weights.safetensors").is_file()  # lycoris_config is set, lora_type is not
    assert "override_dataset_config: accepted, no effect" in out and "skip_file_discovery: accepted" in out
