"""Cache keys, resumption after a kill, atomic entries, compression and the split across processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from data.conftest import image_backend, text_backend, video_backend
from data.helpers import CountingEncoder, build, cache_files, make_config

from vtrain.data.cache import CacheStore
from vtrain.data.caching import CacheJob, build_cache, share_for_rank
from vtrain.data.synthetic_media import write_image


def _latent_keys(dataset) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {s.path.name: s.vae_key for part in dataset.parts for s in part.samples}


def test_cache_keys_change_with_inputs_that_matter_and_only_those(media: Path, tmp_path: Path) -> None:
    backends = [video_backend(media, tmp_path), image_backend(media, tmp_path), text_backend(tmp_path)]
    first, encoder = build(backends)
    keys = _latent_keys(first)
    # unchanged inputs: nothing is encoded again, even with unrelated settings changed
    backends[0]["repeats"] = 3
    again, encoder = build(backends, learning_rate=0.5, seed=99, train_batch_size=1)
    assert _latent_keys(again) == keys and encoder.pixel_items == 0 and encoder.caption_items == 0
    # a changed source file: only its entry is rebuilt
    write_image(media / "images" / "img_a.png", 80, 80, seed=77)
    changed, encoder = build(backends)
    new = _latent_keys(changed)
    assert [n for n in keys if new[n] != keys[n]] == ["img_a.png"] and encoder.pixel_items == 1
    # settings that change the encoded result: every affected entry gets a new key
    for label, change in [("resolution", {"resolution": 48}), ("frames", {"video": {"num_frames": 21,
                                                                                    "min_frames": 21}})]:
        variant = [dict(backends[0], **change), backends[1], backends[2]]
        clips = {n: k for n, k in _latent_keys(build(variant)[0]).items() if n.endswith(".mp4")}
        assert all(clips[n] != new[n] for n in clips), label
    for label, override in [("model", {"pretrained_model_name_or_path": str(tmp_path)}),
                            ("dtype", {"base_model_default_dtype": "bf16"})]:
        assert set(_latent_keys(build(backends, **override)[0]).values()).isdisjoint(new.values()), label
    cropped = [backends[0], dict(backends[1], crop_style="corner"), backends[2]]
    other = _latent_keys(build(cropped)[0])
    # only the non-square image is cut differently by a corner crop; square ones keep their entries
    assert {n for n in other if other[n] != new[n]} == {"img_c.png"}
    # text embeddings depend on the text encoder's identity (tinyflow: the class count)
    text_before = {p.text_key for p in changed.parts[0].samples}
    relabelled, encoder = build(backends, tinyflow_classes=7)
    assert text_before.isdisjoint({s.text_key for s in relabelled.parts[0].samples}) and encoder.caption_items > 0


def test_a_killed_build_resumes_without_redoing_finished_entries(media: Path, tmp_path: Path) -> None:
    backends = [image_backend(media, tmp_path, write_batch_size=1, vae_batch_size=1, repeats=5), text_backend(tmp_path)]
    config = make_config(backends)
    with pytest.raises(KeyboardInterrupt):
        build(backends, encoder=CountingEncoder(config, fail_after=2))
    folder = tmp_path / "cache" / "vae" / "stills"
    assert len(cache_files(folder)) == 2  # two finished entries, nothing half-written
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]
    dataset, encoder = build(backends)
    assert encoder.pixel_items == 1 and len(cache_files(folder)) == 3 and len(dataset) == 18


def test_no_half_written_entry_when_the_write_dies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    store = CacheStore(tmp_path / "store")
    store.write("ab" * 20, {"x": torch.ones(3)})

    def dying_replace(src: str, dst: str) -> None:
        raise OSError("disk died during rename")

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(OSError):
        store.write("cd" * 20, {"x": torch.ones(1000)})
    monkeypatch.undo()
    assert not store.has("cd" * 20)
    assert [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()] == ["ab" * 20 + ".safetensors"]


def test_compressed_entries_round_trip(tmp_path: Path, media: Path) -> None:
    backends = [image_backend(media, tmp_path), text_backend(tmp_path)]
    dataset, _ = build(backends, compress_disk_cache=True)
    files = cache_files(tmp_path / "cache" / "vae" / "stills")
    assert files and all(name.endswith(".safetensors.zz") for name in files)
    plain, encoder = build(backends)  # same content: the compressed entries are reused
    assert encoder.pixel_items == 0
    assert all(bool((dataset[i]["latents"] == plain[i]["latents"]).all()) for i in range(len(plain)))


def test_work_is_split_across_processes(tmp_path: Path) -> None:
    import torch

    keys = [f"{i:040x}" for i in range(11)]
    shares = [share_for_rank(keys, rank, 3) for rank in range(3)]
    assert sorted(k for share in shares for k in share) == sorted(keys)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    store = CacheStore(tmp_path / "split")
    encoded: list[list[str]] = []
    jobs = [CacheJob(k, (lambda k=k: k), "text", k) for k in keys]
    for rank in range(3):  # each rank encodes only its share; together they fill the cache
        seen: list[str] = []

        def encode(batch, seen=seen):  # type: ignore[no-untyped-def]
            seen.extend(batch["captions"])
            return {"x": torch.zeros(len(batch["captions"]))}

        build_cache(jobs, store, encode, input_name="captions", batch_size=4, write_batch_size=2, rank=rank,
                    world_size=3, show_progress=False)
        encoded.append(seen)
    assert [sorted(s) for s in encoded] == [sorted(s) for s in shares]
    assert all(store.has(k) for k in keys)


def test_two_ranks_build_one_dataset(media: Path, tmp_path: Path) -> None:
    """Two ranks (threads here) with a shared barrier: each encodes its share, both see every sample."""
    import threading

    backends = [video_backend(media, tmp_path), image_backend(media, tmp_path), text_backend(tmp_path)]
    barrier = threading.Barrier(2, timeout=60)
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def rank_main(rank: int) -> None:
        try:
            results[rank] = build(backends, rank=rank, world_size=2, barrier=barrier.wait)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    (data0, enc0), (data1, enc1) = results[0], results[1]
    assert enc0.pixel_items + enc1.pixel_items == 8 and min(enc0.pixel_items, enc1.pixel_items) >= 3
    for dataset in (data0, data1):
        assert dataset.bucket_counts() == {"1.43 (80x56@17)": 3, "0.7 (56x80@17)": 2, "1.0 (64x64@1)": 3}
        assert "truncated" in "\n".join(dataset.describe())  # a failure on either rank is reported
