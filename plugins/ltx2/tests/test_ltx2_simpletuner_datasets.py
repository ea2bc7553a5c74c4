"""SimpleTuner's LTX-2 quick-start dataloader examples, written out in their published shape (paths pointed at
generated clips with sound and the tiny model, lengths shrunk for a CPU), train to the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtrain_ltx2.synthetic import clip_specs, render_audio, write_av_clip


def _text_embeds(tmp_path: Path) -> dict[str, Any]:
    return {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": True,
            "cache_dir": str(tmp_path / "cache" / "text" / "ltxvideo2"), "disabled": False}


def test_quickstart_video_dataset_with_audio_block_trains(ltx2_config: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    from vtrain.runner import Runner

    videos = tmp_path / "datasets" / "videos"
    for index, spec in enumerate(clip_specs(3)):
        write_av_clip(videos / f"clip_{index}.mp4", spec, 9, 64, 64, fps=25).with_suffix(".txt").write_text(spec.caption)
    dataloader = [
        {"id": "my-video-dataset", "type": "local", "dataset_type": "video", "instance_data_dir": str(videos),
         "cache_dir_vae": str(tmp_path / "cache" / "vae" / "videos"),  # SimpleTuner derives it; vtrain needs it
         "caption_strategy": "textfile", "resolution": 64,
         "video": {"num_frames": 9, "min_frames": 9, "frame_rate": 25, "bucket_strategy": "aspect_ratio"},
         "audio": {"auto_split": True, "sample_rate": 16000, "channels": 1, "duration_interval": 3.0},
         "repeats": 10},
        _text_embeds(tmp_path),
    ]
    (tmp_path / "multidatabackend.json").write_text(json.dumps(dataloader))
    config = {**ltx2_config, "data_backend_config": str(tmp_path / "multidatabackend.json"), "max_train_steps": 2,
              "train_batch_size": 1}
    result = Runner.from_config(config).run()
    assert result.steps == 2
    printed = capsys.readouterr().out
    assert "3 clip(s) with sound, 0 without" in printed
    metrics = [json.loads(line) for line in (Path(config["output_dir"]) / "metrics.jsonl").open()]
    assert all("loss/audio_flow" in m and "loss/video_flow" in m for m in metrics)  # joint audio+video training
    cached = list((tmp_path / "cache" / "vae" / "videos" / "audio").rglob("*.safetensors"))
    assert len(cached) == 3  # audio latents beside the video latents


def test_quickstart_audio_only_dataset_trains(ltx2_config: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    from vtrain.runner import Runner
    from vtrain_ltx2.validation import write_wav

    sounds = tmp_path / "datasets" / "audio"
    sounds.mkdir(parents=True)
    for index, (spec, seconds) in enumerate(zip(clip_specs(3), (3.2, 3.5, 0.5))):
        path = sounds / f"tone_{index}.wav"
        write_wav(path, render_audio(spec, seconds, 22050), 22050)
        path.with_suffix(".txt").write_text(spec.caption)
    dataloader = [
        {"id": "my-audio-dataset", "type": "local", "dataset_type": "audio", "instance_data_dir": str(sounds),
         "cache_dir_vae": str(tmp_path / "cache" / "vae" / "audio"), "caption_strategy": "textfile",
         "audio": {"audio_only": True, "sample_rate": 16000, "channels": 1, "min_duration_seconds": 1,
                   "max_duration_seconds": 30, "duration_interval": 3.0},
         "repeats": 10},
        _text_embeds(tmp_path),
    ]
    (tmp_path / "multidatabackend.json").write_text(json.dumps(dataloader))
    config = {**ltx2_config, "data_backend_config": str(tmp_path / "multidatabackend.json"), "max_train_steps": 2,
              "train_batch_size": 1}
    result = Runner.from_config(config).run()
    assert result.steps == 2
    printed = capsys.readouterr().out
    assert "duration: 1 shorter than min_duration_seconds, 0 longer than max_duration_seconds" in printed
    assert "buckets audio3s: 22" in printed  # 3.2 s and 3.5 s both become 3 s (x 11 with repeats)
    metrics = [json.loads(line) for line in (Path(config["output_dir"]) / "metrics.jsonl").open()]
    assert all("loss/audio_flow" in m and "loss/video_flow" not in m for m in metrics)  # the video loss is masked


def test_the_dataset_examples_of_the_docs_parse(monkeypatch: Any, tmp_path: Path) -> None:
    """docs/ltx2.md, "SimpleTuner's dataset keys": each dataset example is read as described."""
    from vtrain.data.spec import parse_backends

    text = (Path(__file__).parents[3] / "docs" / "ltx2.md").read_text(encoding="utf-8")
    section = text[text.index("### SimpleTuner's dataset keys"):text.index("Text goes through the pipeline")]
    blocks = [json.loads(part.split("```", 1)[0]) for part in section.split("```json\n")[1:]]
    assert len(blocks) == 3
    for folder in ("videos", "audio", "s2v-videos", "s2v-audio"):
        (tmp_path / "datasets" / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    text_embeds = {"id": "text", "type": "local", "dataset_type": "text_embeds", "cache_dir": "cache/text"}
    video = parse_backends([blocks[0], text_embeds], None).media[0]
    assert (video.video.frame_rate, video.audio.sample_rate, video.audio.channels, video.takes_sound) == (25, 16000, 1, True)
    audio = parse_backends([blocks[1], text_embeds], None).media[0]
    assert audio.audio.audio_only and (audio.audio.min_duration_seconds, audio.audio.max_duration_seconds) == (1, 30)
    linked = parse_backends([*blocks[2], text_embeds], None).media
    assert [b.id for b in linked] == ["s2v-videos"] and linked[0].sound_sources[0][0] == Path("datasets/s2v-audio")
