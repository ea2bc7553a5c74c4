"""Scanning, bucketing, reports and training samples from generated clips, images and broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data.conftest import image_backend, text_backend, video_backend
from data.helpers import build

from vtrain.errors import ConfigError


def test_mixed_videos_images_and_broken_files(media: Path, tmp_path: Path) -> None:
    backends = [video_backend(media, tmp_path), image_backend(media, tmp_path), text_backend(tmp_path)]
    messages: list[str] = []
    dataset, encoder = build(backends, messages=messages)
    assert dataset.bucket_counts() == {"1.43 (80x56@17)": 3, "0.7 (56x80@17)": 2, "1.0 (64x64@1)": 3}
    report = "\n".join(dataset.describe())
    for name, reason in [("short.mp4", "9 frames, fewer than min_frames 17"),
                         ("nocaption.mp4", "missing caption: nocaption.txt not found"),
                         ("zero.mp4", "empty file (0 bytes)"), ("garbage.mp4", "unreadable video"),
                         ("truncated.mp4", "truncated"), ("tiny.png", "under minimum_image_size 32"),
                         ("broken.png", "unreadable image")]:
        lines = [line for line in report.splitlines() if name in line]
        assert len(lines) == 1, (name, lines)  # reported exactly once, with the reason
        assert reason in lines[0], lines[0]
    assert "dataset 'clips' (video" in report and "5 usable" in report
    assert "dataset 'stills' (image" in report and "3 usable" in report
    # samples: cached latents + caption labels + is_i2v + the clip's fps; shapes stack within a bucket
    for index in range(len(dataset)):
        sample = dataset[index]
        assert set(sample) == {"latents", "labels", "is_i2v", "fps", "sample_key"}
        frames = 5 if "@17" in str(dataset.bucket_of(index)) else 1
        assert sample["latents"].shape[:2] == (4, frames)
        assert sample["is_i2v"].dtype == torch.bool
        assert float(sample["fps"]) == (24.0 if frames == 5 else 0.0)  # the clips are written at 24 fps
    assert encoder.pixel_items == 5 + 3  # the truncated clip failed while decoding: never encoded
    assert any("latents 'clips'" in m for m in messages)


def test_resolution_frames_buckets_and_frame_rule(media: Path, tmp_path: Path) -> None:
    backend = video_backend(media, tmp_path, video={"num_frames": 33, "min_frames": 9, "max_frames": 30,
                                                    "bucket_strategy": "resolution_frames", "frame_interval": 8})
    dataset, _ = build([backend, text_backend(tmp_path)])
    # 24 frames -> 17 (8k+1 under 4k+1 with interval 8), 30 -> 25, 21 -> 17, 26 -> 25, 9 -> 9; 40 > max_frames
    assert dataset.bucket_counts() == {"80x56@17": 2, "80x56@25": 1, "56x80@25": 1, "80x56@9": 1}
    assert "40 frames, more than max_frames 30" in "\n".join(dataset.describe())


def test_repeats_and_is_i2v(media: Path, tmp_path: Path) -> None:
    backend = video_backend(media, tmp_path, repeats=2, video={"is_i2v": True})
    dataset, encoder = build([backend, text_backend(tmp_path)])
    assert len(dataset) == 5 * 3
    assert encoder.pixel_items == 5  # repeats reuse the cache: each clip encoded once
    assert all(bool(dataset[i]["is_i2v"]) for i in range(len(dataset)))


def test_bucket_pruning_and_disable(media: Path, tmp_path: Path) -> None:
    backends = [video_backend(media, tmp_path), text_backend(tmp_path)]
    dataset, _ = build(backends, train_batch_size=3, vae_batch_size=1)
    assert dataset.bucket_counts() == {"1.43 (80x56@17)": 3}
    assert "fewer than train_batch_size 3 (pruned" in "\n".join(dataset.describe())
    backends[0]["disable_bucket_pruning"] = True
    dataset, _ = build(backends, train_batch_size=3, vae_batch_size=1)
    assert dataset.bucket_counts() == {"1.43 (80x56@17)": 3, "0.7 (56x80@17)": 3}  # padded to a whole batch
    # a bucket smaller than half a batch is padded by cycling through it, still to a whole batch
    dataset, _ = build(backends, train_batch_size=5, vae_batch_size=1)
    assert dataset.bucket_counts() == {"1.43 (80x56@17)": 5, "0.7 (56x80@17)": 5}


def test_too_small_dataset_says_which_repeats_fix_it(media: Path, tmp_path: Path) -> None:
    backends = [image_backend(media, tmp_path), text_backend(tmp_path)]
    with pytest.raises(ConfigError) as caught:
        build(backends, train_batch_size=2, gradient_accumulation_steps=2)
    text = str(caught.value)
    assert "dataset 'stills'" in text and "per bucket: {'1.0 (64x64@1)': 3}" in text
    assert '"repeats": 1' in text
    backends[0]["repeats"] = 1
    dataset, _ = build(backends, train_batch_size=2, gradient_accumulation_steps=2)
    assert len(dataset) == 6


def test_no_samples_detected_names_the_reasons(media: Path, tmp_path: Path) -> None:
    backend = video_backend(media, tmp_path, video={"num_frames": 200, "min_frames": 200})
    with pytest.raises(ConfigError, match="no samples detected in dataset .*fewer than min_frames 200"):
        build([backend, text_backend(tmp_path)])


def test_delete_problematic_images(media: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    build([image_backend(media, tmp_path), text_backend(tmp_path)], delete_problematic_images=True, messages=messages)
    assert not (media / "images" / "broken.png").exists()
    assert (media / "images" / "tiny.png").exists()  # small, not unreadable: kept
    assert any("deleted" in m and "broken.png" in m for m in messages)


def test_caption_strategies(media: Path, tmp_path: Path) -> None:
    from vtrain.testing.tinyflow import caption_label

    backend = image_backend(media, tmp_path, caption_strategy="instanceprompt", instance_prompt="sks dog")
    dataset, _ = build([backend, text_backend(tmp_path)])
    assert {int(dataset[i]["labels"]) for i in range(len(dataset))} == {caption_label("sks dog", 4)}
    backend = image_backend(media, tmp_path, caption_strategy="filename")
    dataset, _ = build([backend, text_backend(tmp_path)])
    labels = sorted(int(dataset[i]["labels"]) for i in range(len(dataset)))
    assert labels == sorted(caption_label(f"img {x}", 4) for x in "abc")


def test_caption_dropout_is_deterministic_per_seed_and_epoch(media: Path, tmp_path: Path) -> None:
    from vtrain.testing.tinyflow import caption_label

    backend = image_backend(media, tmp_path, repeats=39)
    dataset, _ = build([backend, text_backend(tmp_path)], caption_dropout_probability=0.5)
    empty = caption_label("", 4)
    real = {caption_label(f"an image called {x}", 4) for x in ("img_a", "img_b", "img_c")}
    assert empty not in real  # the test needs distinguishable labels

    def dropped() -> list[bool]:
        return [int(dataset[i]["labels"]) == empty for i in range(len(dataset))]

    first = dropped()
    assert 0.3 < sum(first) / len(first) < 0.7
    assert dropped() == first
    dataset.set_epoch(1)
    second = dropped()
    assert second != first
    again, _ = build([backend, text_backend(tmp_path)], caption_dropout_probability=0.5)
    again.set_epoch(1)
    assert [int(again[i]["labels"]) == empty for i in range(len(again))] == second


def test_several_datasets_in_proportion_and_probability(media: Path, tmp_path: Path) -> None:
    other = media / "images2"
    other.mkdir()
    for path in (media / "images").glob("img_*"):
        (other / path.name).write_bytes(path.read_bytes())
    first = image_backend(media, tmp_path, repeats=9)
    second = image_backend(media, tmp_path, id="stills2", instance_data_dir=str(other), repeats=9,
                           cache_dir_vae=str(tmp_path / "cache" / "vae" / "stills2"))
    dataset, _ = build([first, second, text_backend(tmp_path)])
    parts = [dataset.source_of(i)[0] for i in range(len(dataset))]
    assert parts.count(0) == parts.count(1) == 30  # in proportion to size x (1 + repeats)
    second["probability"] = 0.25
    dataset, _ = build([first, second, text_backend(tmp_path)])
    parts = [dataset.source_of(i)[0] for i in range(len(dataset))]
    share = parts.count(1) / len(parts)
    assert 0.08 < share < 0.35  # expected 0.25 / 1.25 = 0.2
    epoch0 = [dataset.source_of(i) for i in range(len(dataset))]
    dataset.set_epoch(1)
    assert [dataset.source_of(i) for i in range(len(dataset))] != epoch0  # re-dealt every epoch
    # each dealt slot keeps its bucket (shapes stay stackable)
    assert all(dataset.parts[p].samples[s].bucket == dataset.bucket_of(i)
               for i, (p, s) in enumerate(dataset.source_of(i) for i in range(len(dataset))))


def test_offload_during_startup_keeps_one_encoder_on_the_device(media: Path, tmp_path: Path) -> None:
    from data.helpers import CountingEncoder, make_config

    from vtrain.data.build import DataContext, build_datasets
    from vtrain.testing.tinyflow import TinyFlowFamily

    log: list[tuple[str, str]] = []

    class Part(torch.nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name, self.weight = name, torch.nn.Parameter(torch.zeros(1))
            self.where = "meta"

        def to(self, device):  # type: ignore[override]
            log.append((self.name, str(device)))
            self.where = str(device)
            return self

        def parameters(self, recurse: bool = True):  # type: ignore[override]
            class P:
                device = None
            P.device = self.where
            yield P

    text_encoder, vae = Part("text_encoder"), Part("vae")
    seen: list[tuple[str, str, str]] = []
    config = make_config([image_backend(media, tmp_path), text_backend(tmp_path)], offload_during_startup=True)
    encoder = CountingEncoder(config)

    def encode(batch):
        seen.append(("pixels" if "pixels" in batch else "captions", text_encoder.where, vae.where))
        return encoder(batch)

    family = TinyFlowFamily()
    ctx = DataContext(encode=encode, family=family.name, traits=family.traits, components={
        "text_encoder": text_encoder, "vae": vae}, device="accel", say=lambda m: None, show_progress=False)
    build_datasets(config, ctx)
    assert {(w, t, v) for w, t, v in seen} == {("captions", "accel", "cpu"), ("pixels", "cpu", "accel")}
    assert text_encoder.where == "meta" and vae.where == "meta"  # restored afterwards


def test_per_dataset_probability_never_deals_an_excluded_sample() -> None:
    from types import SimpleNamespace

    from vtrain.data.dataset import CachedVideoDataset

    def part(probability: float, count: int) -> SimpleNamespace:
        return SimpleNamespace(probability=probability, samples=[SimpleNamespace(bucket="b") for _ in range(count)])

    parts = [part(0.5, 4), part(1.0, 4)]
    slots = [(p, s) for p in range(2) for s in range(4)]
    dataset = CachedVideoDataset(parts, slots, empty_text_key="", seed=1, report=[])
    held = {(1, 0), (0, 2)}
    dataset.exclude_samples(held)
    for epoch in range(20):
        dataset.set_epoch(epoch)
        kept = [i for i in range(len(dataset)) if dataset.sample_of(i) not in held]
        assert not {dataset.source_of(i) for i in kept} & held, epoch
