"""Trackers: tensorboard event files and an offline wandb run hold every scalar and the validation video."""

from __future__ import annotations

from pathlib import Path

import pytest

from vtrain.family import Artifact
from vtrain.hookspecs import hookimpl


def write_clip(path: Path, frames: int = 5, size: int = 32) -> Path:
    """A tiny real mp4 (moving gradient) written with PyAV."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            ramp = np.linspace(0, 255, size, dtype=np.uint8)
            rgb = np.stack([np.roll(ramp, 4 * index)[None, :].repeat(size, 0)] * 3, axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class VideoValidation:
    """Adds an mp4 to every validation, as a video family would."""

    name = "video_validation"

    @hookimpl(wrapper=True)
    def validate(self, config, step):
        artifacts = yield
        clip = write_clip(Path(config.output_dir) / "validation" / f"step-{step}" / "clip.mp4")
        return [*artifacts, Artifact(path=clip, kind="video", meta={"prompt": "a clip", "fps": 8})]


SCALARS = {"loss", "loss/flow", "lr", "grad_norm", "step_seconds", "samples_per_second", "eval/loss"}


def _config(base: dict, report_to: str) -> dict:
    return dict(base, report_to=report_to, tracker_project_name="proj", tracker_run_name="unit", max_train_steps=4,
                eval_steps_interval=2, validation_prompt="a cube", validation_num_inference_steps=2,
                validation_step_interval=2)


def _tensorboard_tags(folder: Path) -> tuple[set[str], set[str], dict[str, list[int]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    steps = {tag: [event.step for event in acc.Scalars(tag)] for tag in tags["scalars"]}
    return set(tags["scalars"]), set(tags["images"]), steps


def test_tensorboard_and_wandb_together(tinyflow_config, service_runner, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = _config(tinyflow_config, "wandb,tensorboard")
    service_runner(config, plugins=(VideoValidation(),)).run()
    out = Path(config["output_dir"])

    scalars, images, steps = _tensorboard_tags(out / "tensorboard" / "unit")
    assert SCALARS <= scalars
    assert steps["loss"] == [1, 2, 3, 4] and steps["eval/loss"] == [2, 4]
    assert "validation/clip" in images

    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    videos = sorted(p.name for p in (files / "media" / "videos" / "validation").glob("*.mp4"))
    assert [name.split("_")[1] for name in videos] == ["0", "2", "4"]  # the clip at steps 0, 2 and 4
    records = (runs[0] / f"run-{runs[0].name.split('-')[-1]}.wandb").read_bytes()
    for key in SCALARS | {"validation/clip"}:
        assert key.encode() in records, key  # every history key is in the run's record log
    assert b"proj" in records and b"unit" in records


def test_unknown_tracker_is_refused(tinyflow_config, service_runner):
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown tracker 'comet'"):
        service_runner(dict(tinyflow_config, report_to="wandb,comet"))


def test_tracker_names_without_a_tracker_are_a_notice(tinyflow_config, service_runner):
    notices = service_runner(dict(tinyflow_config, tracker_project_name="x")).config.notices
    assert "tracker_project_name: accepted, no effect in vtrain: report_to is none, so no tracker uses it" in notices


def test_a_resumed_run_continues_the_same_wandb_run(tinyflow_config, service_runner, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = dict(tinyflow_config, report_to="wandb", max_train_steps=2, checkpoint_step_interval=2)
    service_runner(config).run()
    out = Path(config["output_dir"])
    first_id = (out / "wandb_run_id.txt").read_text()
    service_runner(dict(config, max_train_steps=4, resume_from_checkpoint="latest")).run()
    assert (out / "wandb_run_id.txt").read_text() == first_id
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(f"-{first_id}" in run.name for run in runs)
    service_runner(dict(config, output_dir=str(out) + "-fresh")).run()
    assert (Path(str(out) + "-fresh") / "wandb_run_id.txt").read_text() != first_id
