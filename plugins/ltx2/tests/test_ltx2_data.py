"""Clips with sound through the core data layer into LTX-2 training (real mp4 files, cached latents)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtrain_ltx2.synthetic import clip_specs, render_audio, write_av_clip


def test_clips_with_sound_train_through_the_data_layer(ltx2_config: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    from vtrain.runner import Runner
    from vtrain_ltx2.encoding import encode_audio

    videos = tmp_path / "videos"
    specs = clip_specs(3)
    for index, spec in enumerate(specs):
        path = write_av_clip(videos / f"clip_{index}.mp4", spec, 9, 64, 64, with_audio=index < 2)
        path.with_suffix(".txt").write_text(spec.caption)
    backends = [
        {"id": "clips", "type": "local", "dataset_type": "video", "instance_data_dir": str(videos),
         "cache_dir_vae": str(tmp_path / "cache" / "vae"), "resolution": 64, "resolution_type": "pixel_area",
         "caption_strategy": "textfile", "crop": False, "repeats": 1, "video": {"num_frames": 9}},
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True,
         "cache_dir": str(tmp_path / "cache" / "text")},
    ]
    (tmp_path / "data.json").write_text(json.dumps(backends))
    config = {**ltx2_config, "data_backend_config": str(tmp_path / "data.json"), "max_train_steps": 3,
              "train_batch_size": 1}
    runner = Runner.from_config(config)
    result = runner.run()
    assert result.steps == 3
    printed = capsys.readouterr().out
    assert "2 clip(s) with sound, 1 without (trained video-only)" in printed and "clip_2.mp4: no audio stream" in printed
    cached = sorted((tmp_path / "cache" / "vae" / "audio").rglob("*.safetensors"))
    assert len(cached) == 2
    from safetensors.torch import load_file

    stored = [load_file(str(path))["audio_latents"] for path in cached]
    assert all(t.shape[0] == round(9 / 24 * 16000 / 160 / 4) for t in stored)  # the pipeline's audio token count
    # after the AAC round trip each entry is the encoding of its own clip's tone, not the other clip's
    bundle = runner.hooks.load_model(runner.config, runner.family)
    expected = [encode_audio(bundle, render_audio(spec, 9 / 24, 16000).unsqueeze(0))[0] for spec in specs[:2]]
    matches = sorted(min(range(2), key=lambda i: float((entry - expected[i]).abs().mean())) for entry in stored)
    assert matches == [0, 1]
