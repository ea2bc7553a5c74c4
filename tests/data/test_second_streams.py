"""Audio as a second stream of a clip: decoded, resampled, aligned to the frames used, cached beside the
latents under the same content keys; clips without sound train without it and are counted."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data.conftest import text_backend, video_backend, write_backends
from data.helpers import make_config

from vtrain.data.build import DataContext, build_datasets
from vtrain.data.media_io import MediaError, NoAudio, load_audio
from vtrain.data.synthetic_media import tone, write_caption, write_clip
from vtrain.testing.tinyflow import TinyFlowFamily

RATE = 8000


@pytest.fixture(scope="module")
def sound_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sound")
    for seed in range(3):
        write_caption(write_clip(root / "videos" / f"loud_{seed}.mp4", 96, 64, 24, fps=24, seed=seed, sound_rate=16000),
                      f"a square with a tone {seed}")
    write_caption(write_clip(root / "videos" / "silent.mp4", 96, 64, 24, fps=24, seed=7), "a silent square")
    return root


def test_audio_is_resampled_and_aligned_to_the_frames_used(sound_clips: Path) -> None:
    path = sound_clips / "videos" / "loud_1.mp4"
    stereo = load_audio(path, 17, 24.0, RATE, 2)
    assert stereo.shape == (2, round(17 / 24 * RATE)) and stereo.dtype == torch.float32
    expected = tone(96, 24, 24, 1, RATE)[:, : stereo.shape[1]]
    lags = range(-40, 41, 4)  # the best alignment is at lag 0 (AAC's priming delay is removed by the decoder)
    errors = [np.abs(np.roll(stereo.numpy(), lag, axis=1)[:, 100:-100] - expected[:, 100:-100]).mean() for lag in lags]
    assert int(np.argmin(errors)) == lags.index(0) and min(errors) < 0.2 * np.abs(expected).mean()
    mono = load_audio(path, 9, 24.0, RATE, 1)
    assert mono.shape == (1, round(9 / 24 * RATE))
    downmix = stereo[:, : mono.shape[1]].sum(0) / 2**0.5  # ffmpeg's stereo-to-mono matrix
    torch.testing.assert_close(mono[0], downmix, atol=0.02, rtol=0)
    with pytest.raises(NoAudio):
        load_audio(sound_clips / "videos" / "silent.mp4", 17, 24.0, RATE, 2)
    with pytest.raises(MediaError, match="lasts"):
        load_audio(path, 17, 12.0, RATE, 2)  # the clip's 24 frames at 12 fps would need 1.4 s of sound


def test_sound_is_cached_beside_the_latents_and_silent_clips_train_without(sound_clips: Path, tmp_path: Path) -> None:
    backends = write_backends(tmp_path / "backends.json", [video_backend(sound_clips, tmp_path), text_backend(tmp_path)])
    config = make_config(str(backends))
    family = TinyFlowFamily()
    seen: list[tuple[int, ...]] = []

    def encode(batch: dict[str, Any]) -> dict[str, Any]:
        if "audio" in batch:
            seen.append(tuple(batch["audio"].shape))
            return {"audio_latents": batch["audio"][:, :, ::100].clone()}
        return family.encode_batch(None, batch, config)  # type: ignore[arg-type]

    traits = dataclasses.replace(family.traits, audio_sample_rate=RATE, audio_channels=2)
    messages: list[str] = []
    ctx = DataContext(encode=encode, family=family.name, traits=traits, identity={"text": {"classes": 4}},
                      say=messages.append, show_progress=False)
    dataset = build_datasets(config, ctx)
    samples = {Path(s.path).name: s for part in dataset.parts for s in part.samples}
    assert set(samples) == {"loud_0.mp4", "loud_1.mp4", "loud_2.mp4", "silent.mp4"}
    assert samples["silent.mp4"].audio_key is None
    keys = [samples[f"loud_{i}.mp4"].audio_key for i in range(3)]  # keyed by the clip and the sound settings
    assert all(keys) and len(set(keys)) == 3 and not set(keys) & {samples[f"loud_{i}.mp4"].vae_key for i in range(3)}
    assert seen and all(shape[1:] == (2, round(17 / 24 * RATE)) for shape in seen)
    assert any("3 clip(s) with sound, 1 without (trained video-only)" in m for m in messages)
    assert any("no sound" in m and "silent.mp4" in m and "no audio stream" in m for m in messages)
    store = tmp_path / "cache" / "vae" / "clips" / "audio"
    assert len(list(store.rglob("*.safetensors"))) == 3
    by_bucket: dict[str, set[bool]] = {}
    for index in range(len(dataset)):
        item = dataset[index]
        by_bucket.setdefault(str(dataset.bucket_of(index)), set()).add("audio_latents" in item)
    assert all(len(flags) == 1 for flags in by_bucket.values()) and len(by_bucket) == 2  # never mixed in a batch
    seen.clear()
    build_datasets(config, ctx)  # cached: nothing is decoded or encoded again
    assert not seen


def test_paired_references_are_cached_and_a_clip_without_one_is_skipped(sound_clips: Path, tmp_path: Path) -> None:
    import shutil

    references = tmp_path / "references"
    references.mkdir()
    for name in ("loud_0.mp4", "loud_1.mp4", "silent.mp4"):
        shutil.copy(sound_clips / "videos" / name, references / name)
    entry = video_backend(sound_clips, tmp_path, conditioning_data_dir=str(references), conditioning_downscale=2)
    backends = write_backends(tmp_path / "backends.json", [entry, text_backend(tmp_path)])
    config = make_config(str(backends))
    family = TinyFlowFamily()
    shapes: list[tuple[int, ...]] = []

    def encode(batch: dict[str, Any]) -> dict[str, Any]:
        if "reference_pixels" in batch:
            shapes.append(tuple(batch["reference_pixels"].shape))
            return {"reference_latents": batch["reference_pixels"].mean(dim=(1, 2))}
        return family.encode_batch(None, batch, config)  # type: ignore[arg-type]

    messages: list[str] = []
    ctx = DataContext(encode=encode, family=family.name, traits=family.traits, identity={"text": {"classes": 4}},
                      say=messages.append, show_progress=False)
    dataset = build_datasets(config, ctx)
    kept = sorted(Path(s.path).name for part in dataset.parts for s in part.samples)
    assert kept == ["loud_0.mp4", "loud_1.mp4", "silent.mp4"]
    assert any("skipped" in m and "loud_2.mp4" in m and "no reference clip" in m for m in messages)
    # the sample's frames, at half the sample's size (the 96x64 sources train at about 80x48)
    assert shapes and all(shape[1:3] == (17, 3) and shape[3] < 40 and shape[4] < 56 for shape in shapes)
    assert all("reference_latents" in dataset[i] for i in range(len(dataset)))
    with pytest.raises(Exception, match="conditioning_data_dir"):
        bad = write_backends(tmp_path / "bad.json", [video_backend(sound_clips, tmp_path, conditioning_data_dir=str(
            tmp_path / "nowhere")), text_backend(tmp_path)])
        build_datasets(make_config(str(bad)), ctx)


def test_an_audio_dataset_of_sound_files_and_captions(tmp_path: Path) -> None:
    """wav/flac/mp3 + captions: each file's first audio_seconds become one sample; short files are skipped."""
    import av

    folder = tmp_path / "sounds"
    folder.mkdir()
    for name, seconds, suffix in (("long", 1.5, ".wav"), ("also_long", 2.0, ".flac"), ("short", 0.4, ".wav")):
        path = folder / f"{name}{suffix}"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("pcm_s16le" if suffix == ".wav" else "flac", rate=22050, layout="mono")
            samples = (np.sin(np.arange(round(seconds * 22050)) / 20) * 8000).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 22050, 0
            for packet in list(stream.encode(frame)) + list(stream.encode(None)):
                container.mux(packet)
        write_caption(path, f"a tone called {name}")
    entry = {"id": "sounds", "type": "local", "dataset_type": "audio", "instance_data_dir": str(folder),
             "cache_dir_vae": str(tmp_path / "cache" / "sounds"), "caption_strategy": "textfile", "audio_seconds": 1.0,
             "repeats": 2}
    backends = write_backends(tmp_path / "backends.json", [entry, text_backend(tmp_path)])
    config = make_config(str(backends))
    family = TinyFlowFamily()
    seen: list[tuple[int, ...]] = []

    def encode(batch: dict[str, Any]) -> dict[str, Any]:
        if "audio" in batch:
            seen.append(tuple(batch["audio"].shape))
            return {"audio_latents": batch["audio"][:, :, ::100].clone()}
        return family.encode_batch(None, batch, config)  # type: ignore[arg-type]

    messages: list[str] = []
    traits = dataclasses.replace(family.traits, audio_sample_rate=RATE, audio_channels=2)
    ctx = DataContext(encode=encode, family=family.name, traits=traits, identity={"text": {"classes": 4}},
                      say=messages.append, show_progress=False)
    dataset = build_datasets(config, ctx)
    assert sorted(Path(s.path).name for s in dataset.parts[0].samples) == ["also_long.flac", "long.wav"]
    assert any("short.wav" in m and "audio_seconds is 1" in m for m in messages)
    assert seen and all(shape[1:] == (2, RATE) for shape in seen)
    item = dataset[0]
    assert "audio_latents" in item and "latents" not in item and float(item["fps"]) == 0
    with pytest.raises(Exception, match="takes no audio"):
        build_datasets(config, DataContext(encode=encode, family=family.name, traits=family.traits,
                                           identity={"text": {"classes": 4}}, show_progress=False))
