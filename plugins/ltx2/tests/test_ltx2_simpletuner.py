"""SimpleTuner's LTX-2 keys: model_family ltxvideo2, model_flavour and the combined checkpoint, the VAE memory
switches, the LoRA targets (audio groups when the data has sound, peft_lora_target_modules)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from vtrain.errors import ConfigError
from vtrain.runner import Runner

COMMIT = "0" * 40


def _problems(config: dict[str, Any]) -> dict[str, str]:
    try:
        Runner.from_config(config)
    except ConfigError as error:
        return {p.where.split(": ", 1)[-1]: f"{p.message} | {p.fix}" for p in error.problems}
    return {}


def fake_hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> Path:
    """A huggingface_hub cache holding ``repo`` as a download leaves it: snapshots/<commit>/..., refs/main."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    for name, source in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture(scope="module")
def combined(ltx2_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vtrain_ltx2.combined import write_combined_checkpoint

    return write_combined_checkpoint(ltx2_tiny_dir, tmp_path_factory.mktemp("combined") / "ltx-2-19b-dev.safetensors")


def _load(config: dict[str, Any]) -> Any:
    runner = Runner.from_config(config)
    return runner, runner.hooks.load_model(runner.config, runner.family)


def _same_weights(module: Any, folder: Path, cls: Any) -> bool:
    reference = cls.from_pretrained(folder).state_dict()
    loaded = module.state_dict()
    return set(reference) == set(loaded) and all(torch.equal(reference[k], loaded[k]) for k in reference)


# -- the family name and the sections -------------------------------------------------------------


def test_ltxvideo2_selects_ltx2_and_claims_its_simpletuner_settings(ltx2_config: dict[str, Any]) -> None:
    base = {k: v for k, v in ltx2_config.items() if k != "ltx2_i2v_probability"}
    config = Runner.from_config({**base, "model_family": "ltxvideo2", "ltx2_first_frame_conditioning_probability": 0.5,
                                 "ltx2_validation_pipeline_mode": "trained-stage"}).config
    assert config.model_family == "ltx2" and config.source("model_family") == "Runner(config)"
    assert any("'ltxvideo2' is read as the 'ltx2' family" in n for n in config.notices)
    assert config.ltx2_i2v_probability == 0.5  # SimpleTuner's first-frame conditioning probability
    assert any("ltx2_validation_pipeline_mode: accepted, no effect" in n and "default" in n for n in config.notices)
    problems = _problems({**ltx2_config, "model_family": "ltxvideo2", "ltx2_validation_pipeline_mode": "spatial-upscale",
                          "ltx2_prefix_conditioning_probability": 0.25, "ltx_i2v_prob": 0.3})
    assert "single-stage LTX2Pipeline" in problems["ltx2_validation_pipeline_mode"]  # this family's, refused with why
    assert "ltx2_extension_frames" in problems["ltx2_prefix_conditioning_probability"]
    assert "only to the ltxvideo family" in problems["i2v_conditioning_probability"]  # read as (as ltx_i2v_prob)


def test_ltxvideo2_keys_are_another_familys_for_ltxvideo(ltx2_config: dict[str, Any]) -> None:
    ltx = {"model_family": "ltxvideo", "max_train_steps": 1, "pretrained_model_name_or_path": "x"}
    problems = _problems({**ltx, "ltx2_validation_pipeline_mode": "spatial-upscale"})
    assert "SimpleTuner's ltxvideo2 models" in problems["ltx2_validation_pipeline_mode"]
    config = Runner.from_config({**ltx, "model_flavour": "0.9.5"}).config  # LTX-Video has no flavours: a notice
    assert any("model_flavour: accepted, no effect" in n for n in config.notices)


def test_the_cli_family_flag_takes_simpletuners_name(ltx2_config: dict[str, Any], tmp_path: Path) -> None:
    from vtrain.cli import main

    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in ltx2_config.items() if k != "model_family"}))
    assert main(["config", "validate", str(path), "--family", "ltxvideo2"]) == 0
    from vtrain.configure import configure

    written = tmp_path / "configured.json"
    assert configure(["--family", "ltxvideo2", "--non-interactive", "--output", str(written), "--set",
                      f"pretrained_model_name_or_path={ltx2_config['pretrained_model_name_or_path']}",
                      "--set", "max_train_steps=1"]) == 0
    assert json.loads(written.read_text())["model_family"] == "ltx2"


# -- model_flavour ---------------------------------------------------------------------------------


def test_unloadable_flavours_are_refused_with_the_reason(ltx2_config: dict[str, Any]) -> None:
    problems = _problems({**ltx2_config, "model_flavour": "dev-fp4"})
    assert "NVFP4" in problems["model_flavour"] and "base_model_precision" in problems["model_flavour"]
    assert "expected one of" in _problems({**ltx2_config, "model_flavour": "0.9.5"})["model_flavour"]
    assert not _problems({**ltx2_config, "model_flavour": "2.0"})  # SimpleTuner's synonym of dev


def test_a_local_combined_checkpoint_loads_every_part(ltx2_config: dict[str, Any], ltx2_tiny_dir: Path,
                                                      combined: Path, hub_cache: Path) -> None:
    """SimpleTuner's shape: pretrained_model_name_or_path is the combined .safetensors file; the configs, Gemma,
    the connectors and the vocoder come from the flavour's repo (Lightricks/LTX-2) in the hub cache."""
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel

    fake_hub_cache(hub_cache, "Lightricks/LTX-2", {".": ltx2_tiny_dir})
    runner, bundle = _load({**ltx2_config, "model_family": "ltxvideo2", "model_flavour": "dev",
                            "pretrained_model_name_or_path": str(combined)})
    assert _same_weights(bundle.model, ltx2_tiny_dir / "transformer", LTX2VideoTransformer3DModel)
    assert _same_weights(bundle.components["vae"], ltx2_tiny_dir / "vae", AutoencoderKLLTX2Video)
    assert _same_weights(bundle.components["audio_vae"], ltx2_tiny_dir / "audio_vae", AutoencoderKLLTX2Audio)
    assert bundle.meta["source"] == str(combined) and "flavour dev (LTX-2.0)" in bundle.meta["flavour"]
    assert str(hub_cache) in bundle.meta["flavour"]  # the rest came from the cached repo


def test_a_hub_repo_holding_the_fp8_file_loads_it_from_the_cache(ltx2_config: dict[str, Any], ltx2_tiny_dir: Path,
                                                                 hub_cache: Path, tmp_path: Path) -> None:
    """dev-fp8 means the repo's fp8 combined file (not its diffusers weights): fetched through huggingface_hub
    (the cache, offline) and its float8 weights cast to the base dtype."""
    from vtrain_ltx2.combined import write_combined_checkpoint

    fp8 = write_combined_checkpoint(ltx2_tiny_dir, tmp_path / "fp8.safetensors", dtype=torch.float8_e4m3fn)
    fake_hub_cache(hub_cache, "Lightricks/LTX-2", {".": ltx2_tiny_dir, "ltx-2-19b-dev-fp8.safetensors": fp8})
    _, bundle = _load({**ltx2_config, "model_flavour": "dev-fp8", "pretrained_model_name_or_path": "Lightricks/LTX-2"})
    weight = bundle.model.transformer_blocks[0].attn1.to_q.weight
    from diffusers import LTX2VideoTransformer3DModel

    reference = LTX2VideoTransformer3DModel.from_pretrained(ltx2_tiny_dir / "transformer").transformer_blocks[0]
    expected = reference.attn1.to_q.weight.to(torch.float8_e4m3fn).float()
    assert weight.dtype == torch.float32 and torch.equal(weight, expected)
    assert bundle.meta["source"].endswith("ltx-2-19b-dev-fp8.safetensors")


def test_a_2_3_combined_checkpoint_in_a_folder(ltx2_config: dict[str, Any], ltx2_tiny23_dir: Path, hub_cache: Path,
                                              tmp_path: Path) -> None:
    """2.3-dev: the folder holds ltx-2.3-22b-dev.safetensors; the configs come from dg845/LTX-2.3-Diffusers. The
    2.3 prompt-modulation keys, which diffusers' converter leaves in ltx-core naming, load too."""
    from diffusers import LTX2VideoTransformer3DModel

    from vtrain_ltx2.combined import write_combined_checkpoint

    write_combined_checkpoint(ltx2_tiny23_dir, tmp_path / "weights" / "ltx-2.3-22b-dev.safetensors")
    fake_hub_cache(hub_cache, "dg845/LTX-2.3-Diffusers", {".": ltx2_tiny23_dir})
    _, bundle = _load({**ltx2_config, "model_family": "ltxvideo2", "model_flavour": "2.3-dev",
                       "pretrained_model_name_or_path": str(tmp_path / "weights")})
    assert bundle.meta["variant"] == "2.3"
    assert _same_weights(bundle.model, ltx2_tiny23_dir / "transformer", LTX2VideoTransformer3DModel)


def test_a_flavour_must_match_the_weights(ltx2_config: dict[str, Any], ltx2_tiny_dir: Path, combined: Path,
                                          hub_cache: Path) -> None:
    fake_hub_cache(hub_cache, "dg845/LTX-2.3-Diffusers", {".": ltx2_tiny_dir})
    with pytest.raises(ConfigError, match=r"2\.3-dev means an LTX-2\.3 model, but the weights .* LTX-2\.0 layout"):
        _load({**ltx2_config, "model_flavour": "2.3-dev", "pretrained_model_name_or_path": str(combined)})
    with pytest.raises(ConfigError, match="neither in the huggingface_hub cache nor downloadable"):
        _load({**ltx2_config, "model_flavour": "dev", "pretrained_model_name_or_path": "Lightricks/not-cached"})
    with pytest.raises(ConfigError, match="dev-fp8 is stored only in its combined checkpoint"):
        _load({**ltx2_config, "model_flavour": "dev-fp8"})  # the diffusers folder holds the bf16 weights
    with pytest.raises(ConfigError, match="has no combined single-file checkpoint"):
        _load({**ltx2_config, "model_flavour": "2.5-dev", "pretrained_model_name_or_path": str(combined)})


# -- VAE memory switches ---------------------------------------------------------------------------


def test_vae_memory_switches_change_the_vaes(prepared: Any) -> None:
    runner, bundle = prepared()
    vae, audio = bundle.components["vae"], bundle.components["audio_vae"]
    assert not (vae.use_slicing or vae.use_tiling or vae.use_framewise_encoding or audio.use_slicing)
    runner, bundle = prepared({"vae_enable_slicing": True, "vae_enable_tiling": True, "vae_enable_patch_conv": True})
    vae, audio = bundle.components["vae"], bundle.components["audio_vae"]
    assert vae.use_slicing and vae.use_tiling and vae.use_framewise_encoding and vae.use_framewise_decoding
    assert audio.use_slicing  # the audio VAE slices too; it has no tiling, and says so
    notes = runner.config.notices
    assert any(n.startswith("vae_enable_tiling: the audio VAE (AutoencoderKLLTX2Audio) offers no spatial tiling")
               for n in notes)
    assert any(n.startswith("vae_enable_patch_conv: the audio VAE") for n in notes)
    _, bundle = prepared({"vae_enable_temporal_roll": True})
    assert bundle.components["vae"].use_framewise_decoding and not bundle.components["vae"].use_tiling


def test_temporal_tiling_encodes_a_long_clip(prepared: Any) -> None:
    """Framewise encoding (vae_enable_patch_conv) gives latents of the same shape as a full encode."""
    _, bundle = prepared({"vae_enable_patch_conv": True})
    from vtrain_ltx2.encoding import encode_pixels

    pixels = torch.rand(1, 25, 3, 64, 64)  # 25 frames > the 16-frame temporal tile
    tiled = encode_pixels(bundle, pixels)
    bundle.components["vae"].use_framewise_encoding = bundle.components["vae"].use_framewise_decoding = False
    full = encode_pixels(bundle, pixels)
    assert tiled.shape == full.shape and torch.isfinite(tiled).all()


# -- LoRA targets ----------------------------------------------------------------------------------


def _lora_modules(bundle: Any) -> set[str]:
    return {name.rsplit(".lora_A", 1)[0] for name, _ in bundle.model.named_parameters() if ".lora_A." in name}


def _datasets(tmp_path: Path, with_audio: bool) -> str:
    from vtrain_ltx2.synthetic import clip_specs, write_av_clip

    folder = tmp_path / f"clips-{with_audio}"
    for index, spec in enumerate(clip_specs(2)):
        write_av_clip(folder / f"clip_{index}.mp4", spec, 9, 64, 64, with_audio=with_audio)
    path = tmp_path / f"data-{with_audio}.json"
    path.write_text(json.dumps([
        {"id": "clips", "type": "local", "dataset_type": "video", "instance_data_dir": str(folder),
         "cache_dir_vae": str(tmp_path / "cache"), "resolution": 64, "video": {"num_frames": 9}},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True, "cache_dir": str(tmp_path / "t")}]))
    return str(path)


def test_audio_projections_join_the_default_targets_when_the_data_has_sound(prepared: Any, tmp_path: Path) -> None:
    _, silent = prepared({"data_backend_config": _datasets(tmp_path, with_audio=False)})
    _, sound = prepared({"data_backend_config": _datasets(tmp_path, with_audio=True)})
    added = _lora_modules(sound) - _lora_modules(silent)
    assert {"audio_proj_in", "audio_proj_out", "audio_caption_projection.linear_1",
            "audio_caption_projection.linear_2", "transformer_blocks.0.audio_ff.net.0.proj",
            "transformer_blocks.1.audio_ff.net.2"} <= added
    assert not any(name.startswith(("proj_in", "transformer_blocks.0.ff.")) for name in added)  # video stays as set
    assert _lora_modules(silent) <= _lora_modules(sound)
    assert "audio groups added" in sound.meta["lora_targets"]
    _, explicit = prepared({"data_backend_config": _datasets(tmp_path, with_audio=True),
                            "ltx2_lora_targets": "attention"})  # set explicitly: kept as written
    assert _lora_modules(explicit) == _lora_modules(silent)


@pytest.mark.parametrize("value", [["to_q", "audio_proj_in"], '["to_q", "audio_proj_in"]', "file"])
def test_peft_lora_target_modules_replaces_the_targets(prepared: Any, tmp_path: Path, value: Any) -> None:
    if value == "file":
        (tmp_path / "targets.json").write_text('["to_q", "audio_proj_in"]')
        value = str(tmp_path / "targets.json")
    _, bundle = prepared({"peft_lora_target_modules": value})
    modules = _lora_modules(bundle)
    assert "audio_proj_in" in modules and all(m.endswith(("to_q", "audio_proj_in")) for m in modules)
    assert {m for m in modules if m.endswith("to_q")} == {n for n, _ in bundle.model.named_modules() if n.endswith(".to_q")}
    assert bundle.model.peft_config["default"].target_modules == {"to_q", "audio_proj_in"}


def test_peft_lora_target_modules_is_checked(ltx2_config: dict[str, Any]) -> None:
    assert "JSON list" in _problems({**ltx2_config, "peft_lora_target_modules": '{"to_q": 1}'})["peft_lora_target_modules"]
    assert "neither a JSON list nor a file" in _problems({**ltx2_config, "peft_lora_target_modules": "nope.json"})[
        "peft_lora_target_modules"]
    assert "every weight" in _problems({**ltx2_config, "model_type": "full",
                                        "peft_lora_target_modules": ["to_q"]})["peft_lora_target_modules"]


# -- every published LTX-2 config ------------------------------------------------------------------

PUBLISHED = json.loads((Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "simpletuner_ltx2_configs.json")
                       .read_text(encoding="utf-8"))
# keys whose refusal (with its reason) is expected: features vtrain has in another form, or not at all
EXPECTED_REFUSALS = {"ramtorch", "ramtorch_target_modules", "ramtorch_disable_extensions", "ramtorch_text_encoder",
                     "ltx2_prefix_conditioning_probability", "ltx2_prefix_conditioning_frames",
                     "ltx2_intrinsic_conditioning", "ltx2_reference_spatial_scale_factor",
                     "ltx2_reference_temporal_scale_factor", "context_parallel_comm_strategy", "base_model_precision",
                     "sdnq_compile_mode", "sdnq_group_size", "sdnq_hadamard_group_size", "sdnq_use_hadamard",
                     "sdnq_use_quantized_matmul", "attention_mechanism"}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_no_key_of_a_published_ltx2_config_is_unknown(name: str, ltx2_config: dict[str, Any]) -> None:
    """Each key of SimpleTuner's LTX-2 example configs and quick-start blocks behaves as there, is a notice with
    the reason, or is refused with the reason (a fix naming what to use); none is an "unknown key"."""
    config = {**PUBLISHED[name], "model_family": "ltxvideo2", "data_backend_config": None, "lycoris_config": None,
              "pretrained_model_name_or_path": ltx2_config["pretrained_model_name_or_path"],
              "gradient_checkpointing": True, "max_train_steps": 1}
    problems = _problems(config)
    assert not [k for k, text in problems.items() if "unknown key" in text], problems
    assert set(problems) <= EXPECTED_REFUSALS, problems
    assert all(text.split(" | ", 1)[1] for text in problems.values())  # every refusal says what to do


def test_the_family_refusals_are_simpletuner_keys_listed_in_the_differences_page() -> None:
    from vtrain.simpletuner_keys import SIMPLETUNER_KEYS
    from vtrain_ltx2.simpletuner import SIMPLETUNER_REFUSALS

    page = (Path(__file__).resolve().parents[3] / "docs" / "differences-from-simpletuner.md").read_text()
    assert [key for key in SIMPLETUNER_REFUSALS if key not in SIMPLETUNER_KEYS] == []
    assert [key for key in SIMPLETUNER_REFUSALS if f"`{key}`" not in page] == []
