"""SimpleTuner's dataset ``audio`` block, ``s2v_datasets`` and ``video.frame_rate``: each key changes what is
read, cached or trained (checked through the real data layer with the tinyflow family given an audio rate)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data.conftest import text_backend, video_backend, write_backends
from data.helpers import make_config

from vtrain.data.build import DataContext, build_datasets
from vtrain.data.media_io import load_audio, load_pixels, probe
from vtrain.data.synthetic_media import write_caption, write_clip
from vtrain.errors import ConfigError
from vtrain.testing.tinyflow import TinyFlowFamily

RATE = 8000


def write_sine(path: Path, seconds: float, hz: float, rate: int = 16000, channels: int = 1) -> Path:
    """A wav of a sine whose loudness rises over the file (so the part that was kept can be told)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    count = round(seconds * rate)
    ramp = np.linspace(0.1, 0.9, count)
    wave = (np.sin(2 * np.pi * hz * np.arange(count) / rate) * ramp * 30000).astype(np.int16)
    layout = "mono" if channels == 1 else "stereo"
    data = np.repeat(wave[None], channels, 0).T.reshape(1, -1) if channels == 2 else wave[None]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            container.mux(packet)
    return path


class Recorder:
    """The tinyflow encoder; sound batches are kept (their "latents" are the waveform itself)."""

    def __init__(self, config: Any) -> None:
        self.family, self.config = TinyFlowFamily(), config
        self.audio: list[torch.Tensor] = []
        self.pixels: list[torch.Tensor] = []

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if "audio" in batch:
            self.audio.extend(batch["audio"].clone())
            return {"audio_latents": batch["audio"].clone()}
        if "pixels" in batch:
            self.pixels.extend(batch["pixels"].clone())
        return self.family.encode_batch(None, batch, self.config)  # type: ignore[arg-type]


def build(entries: list[dict[str, Any]], tmp_path: Path, messages: list[str] | None = None) -> tuple[Any, Recorder]:
    config = make_config(str(write_backends(tmp_path / "backends.json", [*entries, text_backend(tmp_path)])))
    recorder = Recorder(config)
    family = TinyFlowFamily()
    traits = dataclasses.replace(family.traits, audio_sample_rate=RATE, audio_channels=2)
    ctx = DataContext(encode=recorder, family=family.name, traits=traits, identity={"text": {"classes": 4}},
                      say=(messages if messages is not None else []).append, show_progress=False)
    return build_datasets(config, ctx), recorder


def samples_by_name(dataset: Any) -> dict[str, Any]:
    return {Path(s.path).name: s for part in dataset.parts for s in part.samples}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("av")
    for seed in range(2):
        write_caption(write_clip(root / "videos" / f"loud_{seed}.mp4", 64, 64, 17, fps=24, seed=seed, sound_rate=16000),
                      f"a square {seed}")
    write_caption(write_clip(root / "videos" / "silent.mp4", 64, 64, 17, fps=24, seed=5), "a silent square")
    return root


def energy(signal: torch.Tensor) -> float:
    return float(signal.float().pow(2).mean())


def test_sample_rate_and_channels_reach_the_resampler(tmp_path: Path) -> None:
    high = write_sine(tmp_path / "high.wav", 1.0, 3000.0, channels=2)
    direct = load_audio(high, 1, 1.0, RATE, 2)
    narrow = load_audio(high, 1, 1.0, RATE, 2, extract=(4000, 1))  # 3 kHz is above a 4 kHz rate's 2 kHz limit
    assert direct.shape == narrow.shape == (2, RATE)
    assert energy(narrow) < 0.05 * energy(direct)
    pan = write_clip(tmp_path / "videos" / "pan.mp4", 64, 64, 17, fps=24, seed=1, sound_rate=16000)
    stereo = load_audio(pan, 17, 24.0, RATE, 2)
    mono = load_audio(pan, 17, 24.0, RATE, 2, extract=(None, 1))
    assert not torch.allclose(stereo[0], stereo[1], atol=1e-3) and torch.equal(mono[0], mono[1])


def test_the_audio_block_of_a_video_dataset(clips: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    entry = video_backend(clips, tmp_path, audio={"auto_split": True, "sample_rate": 16000, "channels": 1,
                                                  "duration_interval": 3.0})
    dataset, seen = build([entry], tmp_path, messages)
    assert len(seen.audio) == 2 and all(torch.equal(a[0], a[1]) for a in seen.audio)  # channels 1, then stereo
    assert any("2 clip(s) with sound, 1 without" in m for m in messages)
    first_keys = {name: s.audio_key for name, s in samples_by_name(dataset).items()}
    # a changed setting is a new cache entry (the old one is not reused) ...
    entry["audio"] = {"sample_rate": 4000, "channels": 1}
    dataset, seen = build([entry], tmp_path)
    assert len(seen.audio) == 2
    assert {n: s.audio_key for n, s in samples_by_name(dataset).items()}["loud_0.mp4"] != first_keys["loud_0.mp4"]
    # ... and the same settings reuse it
    dataset, seen = build([entry], tmp_path)
    assert not seen.audio
    # allow_zero_audio: the silent clip trains with silence instead of video-only
    entry["audio"] = {"allow_zero_audio": True}
    dataset, seen = build([entry], tmp_path, messages := [])
    silent = samples_by_name(dataset)["silent.mp4"]
    assert silent.audio_key is not None and any("3 clip(s) with sound, 0 without" in m for m in messages)
    assert torch.count_nonzero(dataset.parts[0].audio_store.read(silent.audio_key)["audio_latents"]) == 0
    # auto_split false: no sound is read, the dataset trains video only
    entry["audio"] = {"auto_split": False}
    dataset, seen = build([entry], tmp_path, messages := [])
    assert not seen.audio and all(s.audio_key is None for s in samples_by_name(dataset).values())
    assert any("audio.auto_split is false" in m for m in messages)
    assert all("audio_latents" not in dataset[i] for i in range(len(dataset)))


def test_s2v_datasets_pair_each_clip_with_its_sound_file(clips: Path, tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    write_sine(sounds / "loud_0.wav", 1.0, 300.0)
    write_sine(sounds / "silent.wav", 1.0, 900.0)  # the clip without its own sound
    write_sine(sounds / "unrelated.wav", 1.0, 500.0)
    messages: list[str] = []
    entries = [video_backend(clips, tmp_path, s2v_datasets=["s2v-audio"]),
               {"id": "s2v-audio", "type": "local", "dataset_type": "audio", "instance_data_dir": str(sounds),
                "cache_dir_vae": str(tmp_path / "cache" / "s2v"), "caption_strategy": "filename"}]
    dataset, seen = build(entries, tmp_path, messages)
    assert [part.id for part in dataset.parts] == ["clips"]  # the linked dataset is a sound source only
    samples = samples_by_name(dataset)
    assert samples["loud_1.mp4"].audio_key is None  # no loud_1.* in the audio dataset (its own stream is not used)
    assert any("loud_1.mp4" in m and "no sound file named loud_1" in m for m in messages)
    assert any("2 clip(s) with sound (from s2v_datasets s2v-audio), 1 without" in m for m in messages)
    store = dataset.parts[0].audio_store
    for name, wav in (("loud_0.mp4", "loud_0.wav"), ("silent.mp4", "silent.wav")):
        cached = store.read(samples[name].audio_key)["audio_latents"]
        torch.testing.assert_close(cached, load_audio(sounds / wav, 17, 24.0, RATE, 2))
    with pytest.raises(ConfigError, match="s2v_datasets.*no enabled audio dataset is called 'nope'"):
        build([video_backend(clips, tmp_path, s2v_datasets="nope")], tmp_path)
    entries[1]["audio"] = {"audio_only": True}
    with pytest.raises(ConfigError, match="audio_only.*linked by 'clips'.s2v_datasets"):
        build(entries, tmp_path)


def test_audio_dataset_durations_are_filtered_bucketed_and_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "sounds"
    for name, seconds in (("tiny", 0.4), ("one", 1.3), ("two", 2.5), ("huge", 7.0)):
        write_caption(write_sine(folder / f"{name}.wav", seconds, 440.0), f"a tone {name}")
    entry = {"id": "sounds", "type": "local", "dataset_type": "audio", "instance_data_dir": str(folder),
             "cache_dir_vae": str(tmp_path / "cache" / "sounds"), "caption_strategy": "textfile", "repeats": 2,
             "audio": {"audio_only": True, "min_duration_seconds": 1, "max_duration_seconds": 5,
                       "duration_interval": 1.0, "truncation_mode": "end", "sample_rate": 16000, "channels": 1}}
    messages: list[str] = []
    dataset, seen = build([entry], tmp_path, messages)
    samples = samples_by_name(dataset)
    assert set(samples) == {"one.wav", "two.wav"}
    assert {s.bucket for s in samples.values()} == {"audio1s", "audio2s"}  # 1.3 s -> 1 s, 2.5 s -> 2 s
    assert any("duration: 1 shorter than min_duration_seconds, 1 longer than max_duration_seconds" in m for m in messages)
    assert any("tiny.wav" in m and "min_duration_seconds 1" in m for m in messages)
    assert any("huge.wav" in m and "max_duration_seconds 5" in m for m in messages)
    store = dataset.parts[0].vae_store
    two = store.read(samples["two.wav"].vae_key)["audio_latents"]
    assert two.shape == (2, 2 * RATE)
    end = load_audio(folder / "two.wav", 1, 0.5, RATE, 2, offset=0.5)  # the last 2 s of 2.5 s
    start = load_audio(folder / "two.wav", 1, 0.5, RATE, 2)
    assert energy(two - end) < 1e-3 * energy(end) < energy(start - end)  # the ramp: the end is louder
    # the default interval is SimpleTuner's 3 s: 2.5 s is too short for one bucket, 7 s becomes 6 s
    entry["audio"] = {"max_duration_seconds": 10}
    dataset, _ = build([entry], tmp_path, messages := [])
    assert {s.bucket for s in samples_by_name(dataset).values()} == {"audio6s"}


def test_frame_rate_takes_every_nth_frame_and_sets_the_rate(tmp_path: Path) -> None:
    source = write_caption(write_clip(tmp_path / "videos" / "fast.mp4", 64, 64, 34, fps=48, seed=2, sound_rate=16000),
                           "a fast square").with_suffix(".mp4")
    write_caption(write_clip(tmp_path / "videos" / "odd.mp4", 64, 64, 34, fps=30, seed=3), "an odd rate")
    messages: list[str] = []
    entry = video_backend(tmp_path, tmp_path, video={"frame_rate": 24}, repeats=2)
    dataset, seen = build([entry], tmp_path, messages)
    sample = samples_by_name(dataset)["fast.mp4"]
    assert "odd.mp4" not in samples_by_name(dataset)
    assert any("odd.mp4" in m and "30 fps cannot be brought to video.frame_rate 24" in m for m in messages)
    assert sample.fps == 24 and len(seen.pixels) == 1 and seen.pixels[0].shape[0] == 17
    from vtrain.data.geometry import Geometry

    every = load_pixels(source, probe(source, True), Geometry(33, (64, 64), (0, 0, 64, 64), (64, 64)))
    torch.testing.assert_close(seen.pixels[0], every[::2])
    assert seen.audio[0].shape[-1] == round(17 / 24 * RATE)  # the sound of the 17 frames at 24 fps (0.71 s)
    assert math.isclose(float(dataset[0]["fps"]), 24.0)


@pytest.mark.parametrize("entry, key", [
    ({"dataset_type": "video", "audio": {"audio_only": True}}, "audio.audio_only"),
    ({"dataset_type": "image", "audio": {"channels": 1}}, "audio"),
    ({"dataset_type": "video", "audio": {"channels": 3}}, "audio.channels"),
    ({"dataset_type": "video", "audio": {"sample_rate": 10}}, "audio.sample_rate"),
    ({"dataset_type": "audio", "audio": {"bucket_strategy": "aspect"}}, "audio.bucket_strategy"),
    ({"dataset_type": "audio", "audio": {"truncation_mode": "middle"}}, "audio.truncation_mode"),
    ({"dataset_type": "audio", "audio": {"min_duration_seconds": 5, "max_duration_seconds": 2}}, "audio.max_duration_seconds"),
    ({"dataset_type": "audio", "audio_seconds": 2, "audio": {"duration_interval": 2}}, "audio_seconds"),
    ({"dataset_type": "audio", "audio": {"sampel_rate": 16000}}, "audio.sampel_rate"),
    ({"dataset_type": "image", "s2v_datasets": ["x"]}, "s2v_datasets"),
    ({"dataset_type": "video", "video": {"frame_rate": 0}}, "video.frame_rate"),
])
def test_bad_audio_settings_name_the_key(tmp_path: Path, entry: dict[str, Any], key: str) -> None:
    from vtrain.data.spec import parse_backends

    (tmp_path / "data").mkdir()
    dataset = {"id": "d", "type": "local", "instance_data_dir": str(tmp_path / "data"), "cache_dir_vae": str(tmp_path / "c"),
               **entry}
    with pytest.raises(ConfigError) as error:
        parse_backends([dataset, text_backend(tmp_path)], None)
    assert f"dataset 'd'.{key}" in str(error.value)


def test_differences_page_lists_every_audio_key() -> None:
    from vtrain.data.audio_spec import AUDIO_BLOCK_KEYS

    page = (Path(__file__).parents[2] / "docs" / "differences-from-simpletuner.md").read_text()
    section = page[page.index("### LTX-2 datasets"):]
    missing = [key for key in (*(f"audio.{k}" for k in AUDIO_BLOCK_KEYS), "s2v_datasets", "video.frame_rate")
               if f"`{key}`" not in section]
    assert not missing, f"the LTX-2 datasets section does not mention {missing}"


def test_eval_dataset_id_holds_a_dataset_out(clips: Path, tmp_path: Path) -> None:
    held = tmp_path / "held"
    for seed in (8, 9):
        write_caption(write_clip(held / "videos" / f"held_{seed}.mp4", 64, 64, 17, fps=24, seed=seed), f"held {seed}")
    entries = [video_backend(clips, tmp_path, repeats=2), video_backend(held, tmp_path, id="held-out",
                                                                        cache_dir_vae=str(tmp_path / "cache" / "held"))]
    config = make_config(str(write_backends(tmp_path / "b.json", [*entries, text_backend(tmp_path)])),
                         eval_dataset_id="held-out")
    family = TinyFlowFamily()
    messages: list[str] = []
    ctx = DataContext(encode=Recorder(config), family=family.name, traits=family.traits,
                      identity={"text": {"classes": 4}}, say=messages.append, show_progress=False)
    dataset = build_datasets(config, ctx)
    assert [part.id for part in dataset.parts] == ["clips"] and len(dataset) == 9  # 3 clips x (1 + 2 repeats)
    assert dataset.eval_dataset is not None and len(dataset.eval_dataset) == 2
    assert sorted(Path(s.path).name for s in dataset.eval_dataset.parts[0].samples) == ["held_8.mp4", "held_9.mp4"]
    assert any("held out by eval_dataset_id" in m for m in messages)
    with pytest.raises(ConfigError, match="eval_dataset_id.*no enabled dataset of data_backend_config is called 'nope'"):
        build_datasets(make_config(config["data_backend_config"], eval_dataset_id="nope"), ctx)


def test_a_family_without_audio_says_the_audio_block_has_no_effect(clips: Path, tmp_path: Path) -> None:
    from data.helpers import build as build_plain

    messages: list[str] = []
    entry = video_backend(clips, tmp_path, audio={"channels": 1}, repeats=2)
    build_plain(str(write_backends(tmp_path / "b.json", [entry, text_backend(tmp_path)])), messages=messages)
    assert any("this family takes no audio: the dataset's audio block and s2v_datasets have no effect" in m
               for m in messages)


def test_audio_keys_without_effect_on_a_video_dataset_are_noted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vtrain.data.spec import parse_backends

    (tmp_path / "data").mkdir()
    entry = {"id": "v", "type": "local", "dataset_type": "video", "instance_data_dir": str(tmp_path / "data"),
             "cache_dir_vae": str(tmp_path / "c"), "audio": {"duration_interval": 3.0, "source_from_video": True}}
    with caplog.at_level("WARNING", logger="vtrain.data"):
        plan = parse_backends([entry, text_backend(tmp_path)], None)
    notes = caplog.text
    assert "'v'.audio.duration_interval: accepted, no effect in vtrain" in notes and "audio.source_from_video" in notes
    assert plan.media[0].audio.duration_interval is None  # not read: the sound follows the frames used


def test_both_decoders_take_every_nth_frame(tmp_path: Path) -> None:
    from vtrain.data import media_io
    from vtrain.data.geometry import Geometry

    source = write_clip(tmp_path / "fast.mp4", 64, 64, 20, fps=48, seed=4)
    info = probe(source, True)
    every = media_io.load_pixels(source, info, Geometry(19, (64, 64), (0, 0, 64, 64), (64, 64)))
    strided = Geometry(10, (64, 64), (0, 0, 64, 64), (64, 64), step=2)
    by_pyav = media_io._fill(media_io._output(strided), media_io._pyav_chunks(source, strided), strided, source)
    torch.testing.assert_close(by_pyav, every[::2])
    if media_io.video_decoder() == "decord":
        by_decord = media_io._fill(media_io._output(strided), media_io._decord_chunks(source, strided), strided, source)
        torch.testing.assert_close(by_decord, every[::2])
    with pytest.raises(media_io.MediaError, match="truncated|needed"):
        too_long = Geometry(11, (64, 64), (0, 0, 64, 64), (64, 64), step=2)  # frame 20 does not exist
        media_io._fill(media_io._output(too_long), media_io._pyav_chunks(source, too_long), too_long, source)
