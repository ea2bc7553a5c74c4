"""data_backend_config validation and the frame/size rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data.conftest import image_backend, text_backend, video_backend
from data.helpers import make_config

from vtrain.data.geometry import plan_geometry, valid_frame_count
from vtrain.data.spec import parse_backends
from vtrain.errors import ConfigError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "source_multidatabackend.json"


def test_source_document_multidatabackend_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the source's relative paths, made to exist here
    (tmp_path / "datasets" / "disney-black-and-white").mkdir(parents=True)
    plan = parse_backends(str(FIXTURE), make_config(None))
    (video,) = plan.media
    assert video.id == "disney-black-and-white" and video.resolution == 480 and video.resolution_type == "pixel_area"
    assert video.video.num_frames == 125 and video.video.min_frames == 125 and video.repeats == 0
    assert video.maximum_image_size == 480 and video.target_downsample_size == 480 and not video.crop
    assert plan.default_text == "text-embeds" and plan.text["text-embeds"].write_batch_size == 128
    assert plan.text["text-embeds"].cache_dir == Path("cache/text/ltxvideo")
    # the frame rule of LTX-Video (8k+1) makes 125 frames into 121
    assert valid_frame_count(125, 8, 1) == 121


def test_every_problem_names_the_dataset_and_key(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "videos").mkdir(parents=True)
    (media / "images").mkdir()
    bad_video = video_backend(media, tmp_path, resolution_type="pixels", crop_stlye="center",
                              video={"num_frames": 33, "min_frames": 9, "bucket_strategy": "frames"})
    bad_image = image_backend(media, tmp_path, instance_data_dir=str(tmp_path / "nowhere"), repeats=-1)
    del bad_image["cache_dir_vae"]
    with pytest.raises(ConfigError) as caught:
        parse_backends([bad_video, bad_image, {"id": "clips", "dataset_type": "video"}], make_config(None))
    text = str(caught.value)
    for expected in ["dataset 'clips'.resolution_type: unknown resolution_type 'pixels'",
                     "dataset 'clips'.crop_stlye: unknown key", "did you mean crop_style",
                     "dataset 'clips'.video.bucket_strategy: unknown bucket_strategy 'frames'",
                     "dataset 'stills'.instance_data_dir: folder not found",
                     "dataset 'stills'.repeats: must be at least 0",
                     "dataset 'clips'.id: the id is used twice", "no enabled text_embeds dataset"]:
        assert expected in text, (expected, text)
    assert "cache_dir_vae" not in text


def test_a_dataset_without_cache_dir_vae_caches_where_simpletuner_examples_do(tmp_path: Path,
                                                                               caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "v").mkdir()
    entry = video_backend(tmp_path, tmp_path, instance_data_dir=str(tmp_path / "v"))
    del entry["cache_dir_vae"]
    with caplog.at_level("WARNING", logger="vtrain.data"):
        plan = parse_backends([entry, text_backend(tmp_path)], make_config(None, model_family="tinyflow"))
    assert plan.media[0].cache_dir_vae == Path("cache/vae/tinyflow") / plan.media[0].id
    assert "cache_dir_vae: not set, so the latents are cached in cache/vae/tinyflow/" in caplog.text


def test_min_frames_below_num_frames_needs_resolution_frames(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    entry = video_backend(tmp_path, tmp_path, instance_data_dir=str(tmp_path / "v"), video={"min_frames": 9})
    with pytest.raises(ConfigError, match="min_frames 9 is below num_frames 17"):
        parse_backends([entry, text_backend(tmp_path)], make_config(None))
    entry["video"]["bucket_strategy"] = "resolution_frames"
    parse_backends([entry, text_backend(tmp_path)], make_config(None))


def test_globals_are_defaults_and_disabled_backends_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    entry = video_backend(tmp_path, tmp_path, instance_data_dir=str(tmp_path / "v"))
    del entry["resolution"]
    off = dict(entry, id="off", disabled=True, instance_data_dir="/does/not/exist")
    backends = tmp_path / "backends.json"
    backends.write_text(json.dumps([entry, off, text_backend(tmp_path)]))
    plan = parse_backends(str(backends), make_config(None, resolution=256, caption_dropout_probability=0.1))
    assert [b.id for b in plan.media] == ["clips"]
    assert plan.media[0].resolution == 256 and plan.media[0].caption_dropout_probability == 0.1


def test_frame_counts() -> None:
    assert valid_frame_count(125, 8, 1) == 121
    assert valid_frame_count(9, 8, 1) == 9 and valid_frame_count(8, 8, 1) == 1
    assert valid_frame_count(30, 4, 1, interval=8) == 25
    assert valid_frame_count(7, 1, 0) == 7


def test_geometry_sizes_crops_and_alignment(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    base = video_backend(tmp_path, tmp_path, instance_data_dir=str(tmp_path / "v"), resolution=480)
    plan = parse_backends([base, text_backend(tmp_path)], make_config(None)).media[0]
    g = plan_geometry(1280, 720, 121, plan, 32, "k")
    assert g.size == (640, 352) and all(s % 32 == 0 for s in g.size)  # sqrt(area) ~ 480, 16:9, aligned
    pixel = parse_backends([dict(base, resolution_type="pixel"), text_backend(tmp_path)], make_config(None)).media[0]
    assert plan_geometry(1280, 720, 1, pixel, 32, "k").size == (864, 480)  # shorter side 480
    crop = dict(base, crop=True, crop_style="center", crop_aspect="square")
    square = parse_backends([crop, text_backend(tmp_path)], make_config(None)).media[0]
    g = plan_geometry(1280, 720, 1, square, 32, "k")
    assert g.size == (480, 480) and g.pre_size == (854, 480) and g.crop_box == (187, 0, 480, 480)
    randomised = dict(crop, crop_style="random", crop_aspect="random", crop_aspect_buckets=[0.75, 1.0, 1.5])
    rnd = parse_backends([randomised, text_backend(tmp_path)], make_config(None)).media[0]
    results = {plan_geometry(1280, 720, 1, rnd, 32, f"file{i}") for i in range(30)}
    assert len({r.size for r in results}) == 3  # all three aspect buckets are drawn
    assert plan_geometry(1280, 720, 1, rnd, 32, "same") == plan_geometry(1280, 720, 1, rnd, 32, "same")
    downsample = dict(base, crop=True, crop_aspect="square", maximum_image_size=600, target_downsample_size=500)
    down = parse_backends([downsample, text_backend(tmp_path)], make_config(None)).media[0]
    assert plan_geometry(1920, 1080, 1, down, 32, "k").pre_size == (854, 480)  # shrunk first, then covered


def test_zero_is_checked_not_replaced_and_frame_interval_needs_resolution_frames(media: Path, tmp_path: Path) -> None:
    entries = [video_backend(media, tmp_path, resolution=0, vae_batch_size=0, video={"frame_interval": 4}),
               text_backend(tmp_path)]
    with pytest.raises(ConfigError) as caught:
        parse_backends(entries, make_config(entries))
    text = str(caught.value)
    assert "dataset 'clips'.resolution: must be positive" in text
    assert "dataset 'clips'.vae_batch_size: must be at least 1" in text
    assert "frame_interval: has no effect with bucket_strategy aspect_ratio" in text
