"""Clips with sound through the core data layer into LTX-2 training (real mp4 files, cached latents)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtrain_ltx2.synthetic import clip_specs, render_audio, write_av_clip


def test_clips_with_sound_and_references_train_through_the_data_layer(ltx2_config: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    from vtrain.runner import Runner
    from vtrain_ltx2.encoding import encode_audio

    videos, references = tmp_path / "videos", tmp_path / "references"
    specs = clip_specs(4)
    for index, spec in enumerate(specs):
        path = write_av_clip(videos / f"clip_{index}.mp4", spec, 9, 64, 64, with_audio=index != 2)
        path.with_suffix(".txt").write_text(spec.caption)
        if index < 3:  # IC-LoRA references (another clip, same name); clip_3 has none and is skipped
            write_av_clip(references / f"clip_{index}.mp4", specs[3 - index], 9, 64, 64, with_audio=False)
    backends = [
        {"id": "clips", "type": "local", "dataset_type": "video", "instance_data_dir": str(videos),
         "cache_dir_vae": str(tmp_path / "cache" / "vae"), "resolution": 64, "resolution_type": "pixel_area",
         "caption_strategy": "textfile", "crop": False, "repeats": 1, "video": {"num_frames": 9},
         "conditioning_data_dir": str(references), "conditioning_downscale": 2},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": str(tmp_path / "cache" / "text")},
    ]
    (tmp_path / "data.json").write_text(json.dumps(backends))
    config = {**ltx2_config, "data_backend_config": str(tmp_path / "data.json"), "max_train_steps": 3,
              "train_batch_size": 1, "ltx2_ic_lora": True}
    runner = Runner.from_config(config)
    result = runner.run()
    assert result.steps == 3
    printed = capsys.readouterr().out
    assert "2 clip(s) with sound, 1 without (trained video-only)" in printed and "clip_2.mp4: no audio stream" in printed
    assert "clip_3.mp4: no reference clip" in printed
    from safetensors.torch import load_file

    reference_entries = sorted((tmp_path / "cache" / "vae" / "reference").rglob("*.safetensors"))
    assert len(reference_entries) == 3  # clip_3's missing reference is recorded as a failure, not cached
    assert all(tuple(load_file(str(p))["reference_latents"].shape) == (8, 2, 1, 1) for p in reference_entries)
    cached = sorted((tmp_path / "cache" / "vae" / "audio").rglob("*.safetensors"))
    assert len(cached) == 3

    stored = [load_file(str(path))["audio_latents"] for path in cached]
    assert all(t.shape[0] == round(9 / 24 * 16000 / 160 / 4) for t in stored)  # the pipeline's audio token count
    # after the AAC round trip each entry is the encoding of its own clip's tone, not the other clip's
    bundle = runner.hooks.load_model(runner.config, runner.family)
    expected = [encode_audio(bundle, render_audio(spec, 9 / 24, 16000).unsqueeze(0))[0] for spec in specs]
    matches = sorted(min((0, 1, 3), key=lambda i: float((entry - expected[i]).abs().mean())) for entry in stored)
    assert matches == [0, 1, 3]


def test_audio_only_training_from_sound_files_writes_wav_validation(ltx2_config: dict[str, Any], tmp_path: Path) -> None:
    import wave

    from vtrain.runner import Runner
    from vtrain_ltx2.validation import write_wav

    sounds = tmp_path / "sounds"
    sounds.mkdir()
    for index, spec in enumerate(clip_specs(2)):
        path = sounds / f"tone_{index}.wav"
        write_wav(path, render_audio(spec, 0.6, 22050), 22050)
        path.with_suffix(".txt").write_text(spec.caption)
    backends = [{"id": "sounds", "type": "local", "dataset_type": "audio", "instance_data_dir": str(sounds),
                 "cache_dir_vae": str(tmp_path / "cache" / "sounds"), "caption_strategy": "textfile",
                 "audio_seconds": 0.5, "repeats": 2},
                {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True,
                 "cache_dir": str(tmp_path / "cache" / "text")}]
    (tmp_path / "data.json").write_text(json.dumps(backends))
    config = {**ltx2_config, "data_backend_config": str(tmp_path / "data.json"), "max_train_steps": 2,
              "train_batch_size": 1, "ltx2_video": "off", "validation_step_interval": 2, "validation_prompt": "a tone",
              "validation_resolution": "64x64", "validation_num_video_frames": 9, "validation_num_inference_steps": 2,
              "validation_guidance": 1.0}
    result = Runner.from_config(config).run()
    metrics = [json.loads(line) for line in (Path(config["output_dir"]) / "metrics.jsonl").open()]
    assert all("loss/audio_flow" in m and "loss/video_flow" not in m for m in metrics)
    assert {p.name for p in result.validation} == {"validation-64x64.wav"}
    with wave.open(str(result.validation[0])) as handle:
        assert handle.getframerate() == 24000 and handle.getnchannels() == 2
        assert abs(handle.getnframes() / 24000 - 9 / 24) < 0.05
