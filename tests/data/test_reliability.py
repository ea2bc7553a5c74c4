"""Never lose a user's file, never train on a damaged cache entry, never read a run's outputs as data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from data.conftest import image_backend, text_backend, video_backend
from data.helpers import CountingEncoder, build, make_config

from vtrain.data.geometry import Geometry
from vtrain.data.media_io import MediaError, MediaInfo, load_pixels, probe
from vtrain.data.synthetic_media import write_caption, write_image
from vtrain.errors import TrainingError

TESTS = Path(__file__).resolve().parents[1]

SCAN = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from data.conftest import image_backend, text_backend
    from data.helpers import build
    media, tmp = Path(sys.argv[2]), Path(sys.argv[3])
    messages = []
    dataset, _ = build([image_backend(media, tmp), text_backend(tmp)], delete_problematic_images=True,
                       vae_batch_size=1, messages=messages)
    print(json.dumps({"report": dataset.describe(), "messages": messages}))
""")


def _unprivileged() -> list[str]:
    """A prefix that runs a command without root's power to read any file (chmod 000 must bite)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a permission error cannot be produced")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


def test_a_file_that_cannot_be_read_is_never_deleted(media: Path, tmp_path: Path) -> None:
    good = media / "images" / "img_a.png"
    good.chmod(0)
    script = tmp_path / "scan.py"
    script.write_text(SCAN)
    try:
        proc = subprocess.run([*_unprivileged(), sys.executable, str(script), str(TESTS), str(media), str(tmp_path)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        good.chmod(0o644)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert good.is_file()  # a permission error never deletes
    assert not (media / "images" / "broken.png").exists()  # read, failed to decode: deleted as asked
    line = next(line for line in result["report"] if "img_a.png" in line)
    assert "skipped" in line and "cannot be read (PermissionError" in line and "not deleted: it could not be read" in line
    deleted = [m for m in result["messages"] if m.startswith("delete_problematic_images: deleted")]
    assert len(deleted) == 1 and "broken.png (read, but cannot be decoded: unreadable image" in deleted[0]
    # the read error is not remembered: readable again, the file is used
    messages: list[str] = []
    dataset, _ = build([image_backend(media, tmp_path), text_backend(tmp_path)], vae_batch_size=1, messages=messages)
    assert any(s.path == good for part in dataset.parts for s in part.samples)


def test_an_empty_file_is_skipped_not_deleted(media: Path, tmp_path: Path) -> None:
    build([video_backend(media, tmp_path), text_backend(tmp_path)], delete_problematic_images=True)
    assert (media / "videos" / "zero.mp4").is_file()  # 0 bytes: perhaps still being copied
    assert not (media / "videos" / "garbage.mp4").exists()


def test_a_resize_or_crop_error_is_not_an_unreadable_file(media: Path) -> None:
    from vtrain.data.media_io import MediaProcessingError

    clip = media / "videos" / "wide_a.mp4"
    info = probe(clip, is_video=True)
    bad = Geometry(frames=9, pre_size=(40, 28), crop_box=(0, 0, 80, 56), size=(80, 56))  # crop larger than the frame
    with pytest.raises(MediaProcessingError) as caught:
        load_pixels(clip, info, bad)
    text = str(caught.value)
    assert str(clip) in text and "the frames decoded" in text and "not damaged" in text and "unreadable" not in text
    assert not isinstance(caught.value, MediaError)
    image = media / "images" / "img_a.png"
    with pytest.raises(MediaProcessingError):
        load_pixels(image, MediaInfo(80, 80, 1, 0.0, "pil"), Geometry(1, (40, 40), (0, 0, 64, 64), (64, 64)))
    good = Geometry(frames=9, pre_size=(96, 64), crop_box=(8, 4, 80, 56), size=(80, 56))
    assert load_pixels(clip, info, good).shape == (9, 3, 56, 80)


def test_the_video_decoder_in_use_is_said_once(media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vtrain.data import media_io

    monkeypatch.setitem(sys.modules, "decord", None)  # decord missing: PyAV reads every file
    media_io.video_decoder.cache_clear()
    monkeypatch.setattr(media_io, "_announced", set())
    try:
        second = video_backend(media, tmp_path, id="again", cache_dir_vae=str(tmp_path / "cache" / "vae" / "again"))
        messages: list[str] = []
        dataset, _ = build([video_backend(media, tmp_path), second, text_backend(tmp_path)], messages=messages)
    finally:
        media_io.video_decoder.cache_clear()
    said = [m for m in messages if m.startswith("video decoder:")]
    assert said == ["video decoder: PyAV (decord is not installed; `pip install decord` reads most videos faster)"]
    assert len(dataset) == 10  # every readable clip of both datasets, read with PyAV


def _cache_entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.safetensors"))


def _poison_with_nan(path: Path) -> None:
    """Overwrite the first float32 value of the entry's data with NaN, keeping its header intact."""
    data = bytearray(path.read_bytes())
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    start = 8 + header_size + header[name]["data_offsets"][0]
    data[start : start + 4] = torch.tensor([float("nan")]).numpy().tobytes()
    path.write_bytes(bytes(data))


def test_damaged_cache_entries_are_rebuilt_with_a_note(media: Path, tmp_path: Path) -> None:
    backends = [image_backend(media, tmp_path), text_backend(tmp_path)]
    dataset, _ = build(backends, vae_batch_size=1)
    before = [dataset[i] for i in range(len(dataset))]
    latents = _cache_entries(tmp_path / "cache" / "vae" / "stills")
    texts = _cache_entries(tmp_path / "cache" / "text")
    assert len(latents) == 3
    latents[0].write_bytes(latents[0].read_bytes()[:-7])  # truncated
    latents[1].write_bytes(bytes(latents[1].stat().st_size))  # zero-filled, same size
    _poison_with_nan(latents[2])  # a value turned into NaN
    zeroed_text = texts[0]
    data = bytearray(zeroed_text.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header :] = bytes(len(data) - 8 - header)  # the values zeroed, the header kept
    zeroed_text.write_bytes(bytes(data))
    messages: list[str] = []
    encoder = CountingEncoder(make_config(backends))
    again, encoder = build(backends, encoder=encoder, vae_batch_size=1, messages=messages)
    notes = [m for m in messages if m.startswith("note: cache entry")]
    assert len(notes) == 4, messages
    for path, reason in [(latents[0], "not a readable cache entry"), (latents[1], "not a readable cache entry"),
                         (latents[2], "do not match its checksum"), (zeroed_text, "do not match its checksum")]:
        assert any(str(path) in note and reason in note and "rebuilding it" in note for note in notes), (path, notes)
    assert encoder.pixel_items == 3 and encoder.caption_items == 1  # only the damaged entries were encoded again
    after = [again[i] for i in range(len(again))]
    for old, new in zip(before, after, strict=True):
        assert torch.equal(old["latents"], new["latents"]) and torch.equal(old["labels"], new["labels"])


def test_an_entry_damaged_during_training_stops_with_its_name(media: Path, tmp_path: Path) -> None:
    dataset, _ = build([image_backend(media, tmp_path), text_backend(tmp_path)], vae_batch_size=1)
    sample = dataset.parts[0].samples[0]
    entry = dataset.parts[0].vae_store.path_of(sample.vae_key)
    entry.write_bytes(bytes(entry.stat().st_size))
    index = next(i for i in range(len(dataset)) if dataset.source_of(i) == (0, 0))
    with pytest.raises(TrainingError) as caught:
        dataset[index]
    text = str(caught.value)
    assert str(entry) in text and str(sample.path) in text and "--resume_from_checkpoint latest" in text


class NanEncoder(CountingEncoder):
    """The tinyflow encoder, but the latents of one image come out as NaN (a broken VAE or input)."""

    def __call__(self, batch: dict) -> dict:
        out = super().__call__(batch)
        if "pixels" in batch and self.pixel_calls == 1:
            out["latents"] = torch.full_like(out["latents"], float("nan"))
        return out


def test_an_encoder_output_with_nan_is_never_cached(media: Path, tmp_path: Path) -> None:
    backends = [image_backend(media, tmp_path, repeats=1), text_backend(tmp_path)]
    dataset, _ = build(backends, encoder=NanEncoder(make_config(backends)), vae_batch_size=1)
    report = "\n".join(dataset.describe())
    assert "the encoder returned NaN or infinite values (latents)" in report
    assert len(dataset.parts[0].samples) == 2
    assert all(bool(dataset[i]["latents"].isfinite().all()) for i in range(len(dataset)))


def test_a_run_output_folder_inside_a_dataset_is_never_read(media: Path, tmp_path: Path) -> None:
    old_run = media / "images" / "output"
    (old_run / "validation" / "step-0").mkdir(parents=True)
    (old_run / "run_info.json").write_text("{}")
    for name in ("a", "b"):
        write_caption(write_image(old_run / "validation" / "step-0" / f"{name}.png", 64, 64), "a validation image")
    dataset, _ = build([image_backend(media, tmp_path), text_backend(tmp_path)], vae_batch_size=1)
    assert {s.path.name for s in dataset.parts[0].samples} == {"img_a.png", "img_b.png", "img_c.png"}
    assert f"skipped {old_run}: a vtrain run's output folder: its files are never read as data" in "\n".join(
        dataset.describe())

