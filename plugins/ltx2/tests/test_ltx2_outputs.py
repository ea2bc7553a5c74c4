"""End to end on the tiny model: validation mp4s with sound, portable LoRA files, LyCORIS, LoRA groups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vtrain_ltx2.synthetic import SyntheticAVPlugin


def _decode(path: Path) -> tuple[np.ndarray, int, float]:
    """(frames, audio samples per channel, audio sample rate) of an mp4."""
    import av

    with av.open(str(path)) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        samples = sum(frame.samples for frame in container.decode(audio=0))
    return frames, samples, rate


def _render(pipeline: Any) -> tuple[np.ndarray, np.ndarray]:
    pipeline.set_progress_bar_config(disable=True)
    video, audio = pipeline(prompt="a red square", width=64, height=64, num_frames=9, num_inference_steps=2,
                            max_sequence_length=32, generator=torch.Generator().manual_seed(0), output_type="np",
                            return_dict=False, guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0,
                            audio_guidance_scale=1.0, audio_stg_scale=0.0, audio_modality_scale=1.0,
                            spatio_temporal_guidance_blocks=None)
    return np.asarray(video), audio.float().numpy()


def test_run_writes_mp4s_with_sound_and_a_lora_diffusers_and_comfyui_load(ltx2_config: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    from diffusers import LTX2Pipeline
    from safetensors.torch import load_file

    from vtrain.runner import Runner

    config = {**ltx2_config, "max_train_steps": 4, "learning_rate": 2e-2, "lora_alpha": 16, "lora_rank": 4,
              "ltx2_lora_targets": "all", "validation_step_interval": 4, "validation_prompt": "a blue circle",
              "validation_resolution": "64x64,96x64", "validation_num_video_frames": 17,
              "validation_num_inference_steps": 2, "validation_guidance": 2.0, "disable_benchmark": True}
    result = Runner.from_config(config, plugins=[SyntheticAVPlugin(count=2, frames=9)]).run()
    out = Path(config["output_dir"])
    for width, height in ((64, 64), (96, 64)):
        frames, samples, rate = _decode(out / "validation" / "step-4" / f"validation-{width}x{height}.mp4")
        assert frames.shape == (17, height, width, 3)
        assert rate == 24000 and abs(samples / rate - 17 / 24) < 0.1  # AAC pads by at most a frame or two
    assert len(result.validation) == 2
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert all("loss/video_flow" in m and "loss/audio_flow" in m for m in metrics)

    base = config["pretrained_model_name_or_path"]
    plain_video, plain_audio = _render(LTX2Pipeline.from_pretrained(base))
    pipeline = LTX2Pipeline.from_pretrained(base)
    pipeline.load_lora_weights(out)
    lora_video, lora_audio = _render(pipeline)
    assert np.abs(lora_video - plain_video).max() > 1e-3 and np.abs(lora_audio - plain_audio).max() > 1e-5

    # the ComfyUI copy maps back through diffusers' own converter to the same effective weights (alpha folded)
    saved = load_file(str(out / "pytorch_lora_weights.safetensors"))
    comfy = load_file(str(out / "pytorch_lora_weights_comfyui.safetensors"))
    assert all(key.startswith("diffusion_model.") for key in comfy)
    converted = LTX2Pipeline.lora_state_dict(comfy)
    converted = converted[0] if isinstance(converted, tuple) else converted
    assert set(converted) == set(saved)
    for key, value in saved.items():
        expected = value * (16 / 4) if ".lora_B." in key else value
        torch.testing.assert_close(converted[key], expected)
    comfy_pipeline = LTX2Pipeline.from_pretrained(base)
    comfy_pipeline.load_lora_weights(str(out / "pytorch_lora_weights_comfyui.safetensors"))
    comfy_video, comfy_audio = _render(comfy_pipeline)
    np.testing.assert_allclose(comfy_video, lora_video, atol=1e-5)
    np.testing.assert_allclose(comfy_audio, lora_audio, atol=1e-5)


def test_original_names_cover_the_non_attention_modules() -> None:
    from vtrain_ltx2.saving import comfy_state_dict

    zero = torch.zeros(2, 2)
    keys = set(comfy_state_dict({"transformer.audio_proj_in.lora_A.weight": zero, "transformer.proj_in.lora_B.weight": zero,
                                 "transformer.audio_time_embed.linear.lora_A.weight": zero}, rank=2, alpha=2))
    assert keys == {"diffusion_model.audio_patchify_proj.lora_A.weight", "diffusion_model.patchify_proj.lora_B.weight",
                    "diffusion_model.audio_adaln_single.linear.lora_A.weight"}


@pytest.mark.parametrize(("groups", "present", "absent"), [
    ("video_attention", {".attn1.", ".attn2."}, {".audio_attn", "audio_to_video", "video_to_audio", ".ff."}),
    ("audio_attention", {".audio_attn1.", ".audio_attn2."}, {".attn1.to", "audio_to_video", ".ff."}),
    ("cross_modal_attention", {"audio_to_video_attn", "video_to_audio_attn"}, {".attn1.", ".audio_attn"}),
    ("feed_forward", {".ff.net", ".audio_ff.net"}, {"attn"}),
])
def test_lora_groups_are_exact(prepared: Any, groups: str, present: set[str], absent: set[str]) -> None:
    runner, bundle = prepared({"ltx2_lora_targets": groups})
    names = [n for n, p in bundle.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert all(any(part in n for n in names) for part in present)
    assert not any(part in n for n in names for part in absent), [n for n in names if any(a in n for a in absent)]
    assert len(names) == 2 * 2 * (8 if "attention" in groups else 4)  # A and B x 2 blocks x modules per block


def test_lycoris_trains_and_saves(ltx2_config: dict[str, Any], tmp_path: Path) -> None:
    from lycoris import create_lycoris_from_weights

    from vtrain.runner import Runner
    from vtrain_ltx2.loading import load_transformer

    settings = tmp_path / "lycoris.json"
    settings.write_text(json.dumps({"algo": "lokr", "linear_dim": 4, "linear_alpha": 2, "factor": 4}))
    config = {**ltx2_config, "lora_type": "lycoris", "lycoris_config": str(settings), "max_train_steps": 2}
    runner = Runner.from_config(config, plugins=[SyntheticAVPlugin(count=2, frames=9)])
    result = runner.run()
    assert {p.name for p in result.model_paths} == {"lycoris_weights.safetensors", "lycoris_config.json"}
    network, _ = create_lycoris_from_weights(1.0, str(Path(config["output_dir"]) / "lycoris_weights.safetensors"),
                                             load_transformer(runner.config, torch.float32))
    assert any("audio_attn1" in lora.lora_name or "audio_attn1" in str(getattr(lora, "lora_name", ""))
               for lora in network.loras)


def test_full_fine_tune_saves_a_transformer_folder(ltx2_config: dict[str, Any]) -> None:
    from diffusers import LTX2VideoTransformer3DModel

    from vtrain.runner import Runner

    config = {**ltx2_config, "model_type": "full", "max_train_steps": 1, "learning_rate": 1e-3}
    result = Runner.from_config(config, plugins=[SyntheticAVPlugin(count=2, frames=9)]).run()
    assert any(p.name == "config.json" for p in result.model_paths)
    LTX2VideoTransformer3DModel.from_pretrained(Path(config["output_dir"]) / "transformer")


@pytest.mark.parametrize("mode", ["i2v", "ic_lora"])
def test_i2v_and_ic_lora_validation_videos(ltx2_config: dict[str, Any], tmp_path: Path, mode: str) -> None:
    """i2v renders from ltx2_validation_image; IC-LoRA conditions on the first sample's reference and shows it
    beside the output (same height), both with their audio track."""
    from PIL import Image

    from vtrain.runner import Runner

    config = {**ltx2_config, "max_train_steps": 1, "validation_step_interval": 1, "validation_prompt": "a red square",
              "validation_resolution": "64x64", "validation_num_video_frames": 9, "validation_num_inference_steps": 2,
              "validation_guidance": 1.0}
    plugin = SyntheticAVPlugin(count=2, frames=9)
    if mode == "i2v":
        image = tmp_path / "first.png"
        Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(image)
        config["ltx2_validation_image"] = str(image)
    else:
        # 128 px clips: the half-size reference's 2x2 latents are the smallest the tiny VAE decodes
        config.update(ltx2_ic_lora=True, validation_resolution="128x128")
        plugin = SyntheticAVPlugin(count=2, frames=9, height=128, width=128, reference_scale=2)
    result = Runner.from_config(config, plugins=[plugin]).run()
    frames, samples, rate = _decode(result.validation[0])
    assert frames.shape == ((9, 128, 256, 3) if mode == "ic_lora" else (9, 64, 64, 3))
    assert abs(samples / rate - 9 / 24) < 0.1
