"""Loading through every loading option, and configure-time errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch


def _load(config: dict[str, Any]) -> Any:
    from vtrain.runner import Runner

    runner = Runner.from_config(config)
    return runner.hooks.load_model(runner.config, runner.family)


def _reference_state(folder: Path, sub: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(next((folder / sub).glob("*.safetensors"))))


def _same_weights(module: Any, reference: dict[str, torch.Tensor]) -> bool:
    state = module.state_dict()
    return set(reference) <= set(state) and all(torch.equal(state[k].float(), v.float()) for k, v in reference.items())


def test_base_folder_gives_every_part(ltx_config: dict[str, Any], ltx_tiny_dir: Path) -> None:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import T5EncoderModel

    bundle = _load(ltx_config)
    assert isinstance(bundle.model, LTXVideoTransformer3DModel)
    assert isinstance(bundle.components["vae"], AutoencoderKLLTXVideo)
    assert isinstance(bundle.components["text_encoder"], T5EncoderModel)
    assert isinstance(bundle.noise_scheduler, FlowMatchEulerDiscreteScheduler)
    assert bundle.meta["spatial_compression"] == 32 and bundle.meta["temporal_compression"] == 8
    assert _same_weights(bundle.model, _reference_state(ltx_tiny_dir, "transformer"))
    assert not any(p.requires_grad for p in bundle.model.parameters())


def test_base_model_default_dtype(ltx_config: dict[str, Any]) -> None:
    bundle = _load({**ltx_config, "base_model_default_dtype": "bf16"})
    assert next(bundle.model.parameters()).dtype == torch.bfloat16
    assert bundle.components["vae"].dtype == torch.bfloat16


def test_separate_vae_and_transformer_at_root(ltx_config: dict[str, Any], ltx_tiny_dir: Path, tmp_path: Path) -> None:
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    other = make_pipeline_folder(tmp_path / "other", seed=5)  # different random weights
    root_only = tmp_path / "finetuned"
    shutil.copytree(other / "transformer", root_only)  # a fine-tune published without the pipeline layout
    bundle = _load({**ltx_config, "pretrained_vae_model_name_or_path": str(other),
                    "pretrained_transformer_model_name_or_path": str(root_only),
                    "pretrained_transformer_subfolder": "none"})
    assert _same_weights(bundle.model, _reference_state(other, "transformer"))
    assert _same_weights(bundle.components["vae"], _reference_state(other, "vae"))
    assert not _same_weights(bundle.model, _reference_state(ltx_tiny_dir, "transformer"))


def test_single_file_transformer_checkpoint(ltx_config: dict[str, Any], ltx_tiny_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from vtrain_ltxvideo.saving import to_original_name
    from vtrain_ltxvideo.tiny import make_pipeline_folder

    other = make_pipeline_folder(tmp_path / "other", seed=6)
    reference = _reference_state(other, "transformer")
    # the original LTX-Video single-file layout (what ComfyUI and the Lightricks repo ship)
    original = {f"model.diffusion_model.{to_original_name(k)}": v for k, v in reference.items()}
    checkpoint = tmp_path / "ltx-finetune.safetensors"
    save_file(original, str(checkpoint))
    bundle = _load({**ltx_config, "pretrained_transformer_model_name_or_path": str(checkpoint),
                    "pretrained_transformer_subfolder": "none"})
    assert _same_weights(bundle.model, reference)


def test_hub_id_resolves_through_the_hub_cache(ltx_config: dict[str, Any], ltx_tiny_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id goes through huggingface_hub exactly as online; here the offline cache holds the files."""
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    commit = "0" * 40
    repo = cache / "models--Lightricks--LTX-Video-tiny"
    shutil.copytree(ltx_tiny_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_HUB_CACHE", str(cache))
    import diffusers.utils.constants as diffusers_constants
    import transformers.utils.hub as transformers_hub

    monkeypatch.setattr(diffusers_constants, "HF_HUB_CACHE", str(cache), raising=False)
    monkeypatch.setattr(transformers_hub, "TRANSFORMERS_CACHE", str(cache), raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    bundle = _load({**ltx_config, "pretrained_model_name_or_path": "Lightricks/LTX-Video-tiny"})
    assert _same_weights(bundle.model, _reference_state(ltx_tiny_dir, "transformer"))
    assert bundle.meta["source"] == "Lightricks/LTX-Video-tiny"


def test_missing_model_is_a_clear_error(ltx_config: dict[str, Any], tmp_path: Path) -> None:
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="pretrained_model_name_or_path"):
        _load({**ltx_config, "pretrained_model_name_or_path": str(tmp_path / "nowhere")})
    config = dict(ltx_config)
    del config["pretrained_model_name_or_path"]
    from vtrain.runner import Runner

    with pytest.raises(ConfigError, match="needs a base model"):
        Runner.from_config(config)
    # a separate transformer and VAE do not replace it: the text encoder and scheduler come from the base
    with pytest.raises(ConfigError, match="needs a base model"):
        Runner.from_config({**config, "pretrained_transformer_model_name_or_path": str(tmp_path),
                            "pretrained_vae_model_name_or_path": str(tmp_path)})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"use_masked_loss": True}, "masked loss is not supported"),
    ({"validation_resolution": "700x512"}, "multiples of 32"),
    ({"validation_num_video_frames": 12}, "8k\\+1"),
    ({"model_type": "full", "lora_target": "all"}, "lora_target has no effect"),
    ({"validation_image": "missing.png"}, "file not found"),
    ({"lora_alpha": 0}, "lora_alpha=0 scales the adapter"),
])
def test_configure_time_errors(ltx_config: dict[str, Any], overrides: dict[str, Any], message: str) -> None:
    from vtrain.errors import ConfigError
    from vtrain.runner import Runner

    with pytest.raises(ConfigError, match=message):
        Runner.from_config({**ltx_config, **overrides})


def test_make_tiny_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from diffusers import LTXPipeline

    from vtrain_ltxvideo.commands import run_ltxvideo_command

    assert run_ltxvideo_command(["make-tiny", str(tmp_path / "t")]) == 0
    assert "use it with" in capsys.readouterr().out
    pipeline = LTXPipeline.from_pretrained(tmp_path / "t")
    assert pipeline.vae.spatial_compression_ratio == 32 and pipeline.vae.temporal_compression_ratio == 8
    assert sum(f.stat().st_size for f in (tmp_path / "t").rglob("*") if f.is_file()) < 2_000_000
