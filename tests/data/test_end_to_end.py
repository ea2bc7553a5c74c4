"""The data layer inside a real run: tinyflow trains from generated clips and images through the caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data.conftest import image_backend, text_backend, video_backend, write_backends
from safetensors.torch import load_file


def _config(tinyflow_config: dict[str, Any], media: Path, tmp: Path, **extra: Any) -> dict[str, Any]:
    backends = write_backends(tmp / "multidatabackend.json",
                              [video_backend(media, tmp, repeats=1), image_backend(media, tmp, repeats=1),
                               text_backend(tmp)])
    return {**tinyflow_config, "data_backend_config": str(backends), "vae_batch_size": 2,
            "caption_dropout_probability": 0.2, "max_train_steps": 8, **extra}


def test_run_trains_from_cached_media_and_resumes_bit_exactly(tinyflow_config: dict[str, Any], make_runner: Any,
                                                              media: Path, tmp_path: Path) -> None:
    straight = make_runner(_config(tinyflow_config, media, tmp_path, output_dir=str(tmp_path / "a"))).run()
    assert straight.steps == 8 and straight.final_loss is not None
    # a second run in two halves: the second half resumes from the checkpoint of step 4
    half = _config(tinyflow_config, media, tmp_path, output_dir=str(tmp_path / "b"), checkpoint_step_interval=4)
    make_runner({**half, "max_train_steps": 4}).run()
    resumed = make_runner({**half, "resume_from_checkpoint": "latest"}).run()
    assert resumed.steps == 8 and resumed.resumed_from is not None
    a, b = load_file(str(straight.model_paths[0])), load_file(str(resumed.model_paths[0]))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_is_i2v_follows_the_family_default_unless_the_dataset_sets_it() -> None:
    from vtrain.data.build import _is_i2v
    from vtrain.data.spec import VideoSection

    class Backend:
        is_video = True
        video = VideoSection()

    assert Backend.video.is_i2v is None
    assert _is_i2v(Backend, True) is True and _is_i2v(Backend, False) is False
    Backend.video = VideoSection(is_i2v=False)
    assert _is_i2v(Backend, True) is False
