"""Loading: diffusers folders of both layouts, separate component paths, single files, make-tiny."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch


def _load(config: dict[str, Any]) -> Any:
    from vtrain.runner import Runner

    runner = Runner.from_config(config)
    return runner.hooks.load_model(runner.config, runner.family)


def test_layouts_are_detected_from_the_configs(ltx2_config: dict[str, Any], ltx2_tiny23_dir: Path) -> None:
    old = _load(ltx2_config)
    assert old.meta["variant"] == "2.0" and old.meta["layout"].vocoder_class == "LTX2Vocoder"
    new = _load({**ltx2_config, "pretrained_model_name_or_path": str(ltx2_tiny23_dir)})
    layout = new.meta["layout"]
    assert (layout.variant, layout.gated_attention, layout.per_modality_projections) == ("2.3", True, True)
    assert layout.vocoder_class == "LTX2VocoderWithBWE"
    assert type(new.components["vocoder"]).__name__ == "LTX2VocoderWithBWE"


def test_separate_component_paths_replace_parts(ltx2_config: dict[str, Any], ltx2_tiny_dir: Path,
                                                tmp_path: Path) -> None:
    """A transformer folder with its weights at the root and a Gemma folder without connectors, as a user with
    separately published weights has them."""
    import shutil

    from diffusers import LTX2VideoTransformer3DModel

    transformer_dir = tmp_path / "my-transformer"
    source = LTX2VideoTransformer3DModel.from_pretrained(ltx2_tiny_dir / "transformer")
    with torch.no_grad():
        next(source.parameters()).add_(1.0)
    source.save_pretrained(transformer_dir)
    gemma = tmp_path / "gemma"
    for part in ("text_encoder", "tokenizer"):
        shutil.copytree(ltx2_tiny_dir / part, gemma / part)
    bundle = _load({**ltx2_config, "ltx2_transformer_path": str(transformer_dir), "ltx2_text_encoder_path": str(gemma)})
    torch.testing.assert_close(next(bundle.model.parameters()), next(source.parameters()))
    assert bundle.meta["variant"] == "2.0"  # the connectors come from the base folder when the Gemma folder has none


def test_a_missing_model_is_a_clear_error(ltx2_config: dict[str, Any], tmp_path: Path) -> None:
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _load({**ltx2_config, "ltx2_vae_path": str(tmp_path / "nowhere")})
    assert "ltx2_vae_path" in str(info.value) and "diffusers LTX-2 folder" in str(info.value)


def test_make_tiny_command_writes_a_loadable_folder(tmp_path: Path) -> None:
    from diffusers import LTX2Pipeline

    from vtrain_ltx2.commands import run_ltx2_command

    assert run_ltx2_command(["make-tiny", str(tmp_path / "t"), "--variant", "2.3"]) == 0
    pipeline = LTX2Pipeline.from_pretrained(tmp_path / "t")
    assert pipeline.transformer.config.gated_attn
    assert run_ltx2_command(["make-tiny", str(tmp_path / "full"), "--size", "full"]) == 0
    settings = json.loads((tmp_path / "full" / "transformer" / "config.json").read_text())
    assert (settings["num_layers"], settings["num_attention_heads"], settings["attention_head_dim"]) == (48, 32, 128)
    assert not list((tmp_path / "full").rglob("*.safetensors"))
    # the 19B architecture builds without memory (meta); materialising it is the GPU benchmark's job
    from diffusers import LTX2VideoTransformer3DModel

    with torch.device("meta"):
        model = LTX2VideoTransformer3DModel.from_config(LTX2VideoTransformer3DModel.load_config(tmp_path / "full" / "transformer"))
    assert sum(p.numel() for p in model.parameters()) > 18e9


def test_single_file_transformer_in_the_original_layout(ltx2_config: dict[str, Any], ltx2_tiny_dir: Path,
                                                        tmp_path: Path) -> None:
    """An ltx-core checkpoint (``model.diffusion_model.`` keys, original names) loads through diffusers'
    ``from_single_file``, the architecture taken from the base folder."""
    from diffusers import LTX2VideoTransformer3DModel
    from safetensors.torch import save_file

    from vtrain_ltx2.saving import to_original_name

    source = LTX2VideoTransformer3DModel.from_pretrained(ltx2_tiny_dir / "transformer")
    original = {}
    for key, value in source.state_dict().items():
        key = to_original_name(key).replace("norm_q", "q_norm").replace("norm_k", "k_norm")
        key = key.replace("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video")
        key = key.replace("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio")
        original["model.diffusion_model." + key] = value.contiguous()
    checkpoint = tmp_path / "ltx-2-tiny.safetensors"
    save_file(original, str(checkpoint))
    bundle = _load({**ltx2_config, "ltx2_transformer_path": str(checkpoint)})
    loaded = bundle.model.state_dict()
    assert all(torch.equal(value, loaded[key]) for key, value in source.state_dict().items())
