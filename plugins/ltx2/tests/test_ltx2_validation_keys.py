"""SimpleTuner's validation keys on LTX-2: a distilled-style LoRA in Lightricks' (ComfyUI) layout as a validation
adapter, applied during validation only; validation_num_video_frames against the VAE's 8k+1 rule."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vtrain_ltx2.synthetic import SyntheticAVPlugin


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as handle:
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.float32)


def test_a_comfyui_lora_is_a_validation_adapter_only(ltx2_config: dict[str, Any], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from vtrain.runner import Runner
    from vtrain_ltx2.adapters import read_lora

    base = {**ltx2_config, "max_train_steps": 2, "train_batch_size": 1, "ltx2_video": "off",
            "validation_prompt": "a tone", "validation_resolution": "64x64", "validation_num_video_frames": 9,
            "validation_num_inference_steps": 2, "validation_guidance": 1.0, "disable_benchmark": True}
    first = Runner.from_config({**base, "output_dir": str(tmp_path / "first")}, plugins=[SyntheticAVPlugin(2, 9)]).run()
    lora_dir = Path(first.output_dir)
    # both published layouts read to the same weights (alpha folded or kept as lora_alpha)
    diffusers_state, diffusers_alpha = read_lora(str(lora_dir), None)
    comfy_state, comfy_alpha = read_lora(str(lora_dir), "pytorch_lora_weights_comfyui.safetensors")
    assert set(diffusers_state) == set(comfy_state) and comfy_alpha is None and diffusers_alpha is not None
    rank = next(v for k, v in diffusers_state.items() if k.endswith("lora_A.weight")).shape[0]
    for key in [k for k in diffusers_state if k.endswith("lora_A.weight")][:3]:
        up = key.replace("lora_A", "lora_B")
        torch.testing.assert_close(diffusers_state[up] @ diffusers_state[key] * (diffusers_alpha / rank),
                                   comfy_state[up] @ comfy_state[key])
    # a strong adapter in Lightricks' layout (diffusion_model.* names), as a repo's distilled LoRA would be
    strong = {k: v * (300.0 if ".lora_B." in k else 1.0)
              for k, v in load_file(str(lora_dir / "pytorch_lora_weights_comfyui.safetensors")).items()}
    save_file(strong, str(tmp_path / "distilled.safetensors"))
    config = {**base, "output_dir": str(tmp_path / "second"), "validation_adapter_path": str(tmp_path / "distilled.safetensors"),
              "validation_adapter_name": "distilled", "validation_adapter_mode": "comparison"}
    plain = Runner.from_config({**base, "output_dir": str(tmp_path / "plain")}, plugins=[SyntheticAVPlugin(2, 9)]).run()
    second = Runner.from_config(config, plugins=[SyntheticAVPlugin(2, 9)]).run()
    names = {p.name for p in second.validation}
    assert names == {"validation-64x64.wav", "validation-distilled-64x64.wav"}
    folder = Path(second.output_dir) / "validation" / "step-2"
    without, with_adapter = _wav(folder / "validation-64x64.wav"), _wav(folder / "validation-distilled-64x64.wav")
    np.testing.assert_array_equal(without, _wav(Path(plain.output_dir) / "validation" / "step-2" / "validation-64x64.wav"))
    assert np.abs(with_adapter - without).mean() > 1.0  # int16 units: the adapter changed the sound
    saved, reference = (load_file(str(Path(r.output_dir) / "pytorch_lora_weights.safetensors")) for r in (second, plain))
    assert set(saved) == set(reference) and all(torch.equal(saved[k], reference[k]) for k in saved)


@pytest.mark.parametrize("frames, nearest", [(61, "use 57 or 65"), (80, "use 73 or 81")])
def test_validation_frames_follow_the_vae_rule(ltx2_config: dict[str, Any], frames: int, nearest: str) -> None:
    from vtrain.errors import ConfigError
    from vtrain.runner import Runner

    with pytest.raises(ConfigError) as error:
        Runner.from_config({**ltx2_config, "validation_num_video_frames": frames}).run()
    assert "validation_num_video_frames" in str(error.value) and "8k+1" in str(error.value) and nearest in str(error.value)


def test_validation_using_datasets_conditions_on_the_held_out_clip(ltx2_config: dict[str, Any], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import json

    from safetensors.torch import load_file

    import vtrain_ltx2.validation as validation
    from vtrain.runner import Runner
    from vtrain_ltx2.audio_condition import fit_tokens
    from vtrain_ltx2.synthetic import clip_specs, write_av_clip

    specs = clip_specs(3)
    for index, spec in enumerate(specs[:2]):
        write_av_clip(tmp_path / "train" / f"clip_{index}.mp4", spec, 9, 64, 64).with_suffix(".txt").write_text(spec.caption)
    write_av_clip(tmp_path / "held" / "held.mp4", specs[2], 9, 64, 64).with_suffix(".txt").write_text(specs[2].caption)
    common = {"type": "local", "dataset_type": "video", "resolution": 64, "caption_strategy": "textfile",
              "video": {"num_frames": 9}}
    backends = [{"id": "train", "instance_data_dir": str(tmp_path / "train"), "cache_dir_vae": str(tmp_path / "c" / "train"),
                 "repeats": 2, **common},
                {"id": "held-out", "instance_data_dir": str(tmp_path / "held"), "cache_dir_vae": str(tmp_path / "c" / "held"),
                 **common},
                {"id": "text", "type": "local", "dataset_type": "text_embeds", "cache_dir": str(tmp_path / "c" / "text")}]
    (tmp_path / "data.json").write_text(json.dumps(backends))
    seen: list[Any] = []
    original = validation.dataset_first_frame

    def spy(bundle: Any) -> Any:
        seen.append(bundle.meta["validation_samples"][0]["latents"].clone())
        return original(bundle)

    monkeypatch.setattr(validation, "dataset_first_frame", spy)
    import contextlib

    conditioned = validation.audio_conditioned
    fed: list[tuple[Any, Any, Any]] = []

    @contextlib.contextmanager
    def watch(pipeline: Any, clean: Any) -> Any:
        def capture(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
            fed.append((clean.clone(), kwargs["audio_hidden_states"].clone(), kwargs["audio_timestep"].clone()))

        with conditioned(pipeline, clean):
            handle = pipeline.transformer.register_forward_pre_hook(capture, with_kwargs=True)  # runs after the swap
            try:
                yield
            finally:
                handle.remove()

    monkeypatch.setattr(validation, "audio_conditioned", watch)
    config = {**ltx2_config, "data_backend_config": str(tmp_path / "data.json"), "max_train_steps": 1,
              "train_batch_size": 1, "validation_using_datasets": True, "eval_dataset_id": "held-out",
              "validation_prompt": "a square", "validation_resolution": "64x64", "validation_num_video_frames": 9,
              "validation_num_inference_steps": 2, "validation_guidance": 1.0, "disable_benchmark": True}
    result = Runner.from_config(config).run()
    assert "held out by eval_dataset_id" in capsys.readouterr().out
    held_latents = [load_file(str(p))["latents"] for p in (tmp_path / "c" / "held").rglob("*.safetensors")
                    if "latents" in load_file(str(p))]
    assert len(seen) == 1 and len(held_latents) == 1 and torch.equal(seen[0], held_latents[0])
    assert [p.name for p in result.validation] == ["validation-64x64.mp4"]
    # audio-conditioned: every transformer call saw the held-out clip's cached sound, clean, at timestep 0
    held_sound = [load_file(str(p))["audio_latents"] for p in (tmp_path / "c" / "held" / "audio").rglob("*.safetensors")]
    assert len(held_sound) == 1 and fed and torch.equal(fed[0][0].cpu(), held_sound[0])
    for clean, hidden, timestep in fed:
        assert torch.equal(hidden[0].cpu(), fit_tokens(clean, hidden.shape[1]).cpu()) and not timestep.any()
    import av

    with av.open(str(result.validation[0])) as container:
        assert container.streams.audio  # the conditioning sound is the output's track
