"""Experiment trackers through ``report_to``: ``wandb``, ``tensorboard``, ``none`` or several at once.

Every value of a step's logs is tracked (every loss term of every plugin, the evaluation loss,
lr, grad norm, step time, throughput); validation media are logged from their files (mp4/gif
as videos, png/jpg as images). Trackers run on the main process only. A third-party tracker is
a plugin on the same lifecycle hooks (see ``docs/writing-a-tracker.md``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vtrain.hookspecs import hookimpl
from vtrain.services import _state

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import Artifact, ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

NAME = "trackers"
BUILTIN = ("wandb", "tensorboard")
VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class Tracker(Protocol):
    """What a built-in tracker does."""

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None: ...

    def log_media(self, step: int, artifacts: list[Artifact]) -> None: ...

    def finish(self, failed: bool) -> None: ...


def parse_report_to(value: str | None) -> list[str]:
    """The built-in trackers named: ``"wandb, csv"`` -> ``["wandb"]``; ``none``/empty -> ``[]``; ``all`` -> both."""
    names = _names(value)
    if "all" in names:
        return list(BUILTIN)
    return [name for name in names if name in BUILTIN]


def _names(value: str | None) -> list[str]:
    names = [part.strip().lower() for part in (value or "").split(",") if part.strip()]
    return [name for name in dict.fromkeys(names) if name != "none"]


def reports_to(config: ResolvedConfig, name: str) -> bool:
    """Whether the tracker ``name`` should run: it is listed in ``report_to``, or ``report_to`` is ``all``.

    What a third-party tracker registered with ``register_trackers`` checks in its hooks.
    """
    names = _names(config.get("report_to"))
    return name.lower() in names or "all" in names


def check_report_to(config: ResolvedConfig, registered: Mapping[str, str]) -> list[str]:
    """Problems with the names in ``report_to`` given every registered tracker (built-ins included)."""
    known = ["all", "none", *registered]
    return [f"unknown tracker {name!r}: registered trackers are {', '.join(known)} (a third-party tracker "
            "registers its name with the register_trackers hook; is its plugin installed and not blocked?)"
            for name in _names(config.get("report_to")) if name not in registered and name != "all"]


def media_tag(artifact: Artifact) -> str:
    """``validation/<file stem>``: the nickname (and ``-ema`` for EMA renders) names the media."""
    return f"validation/{Path(artifact.path).stem}"


class WandbTracker:
    """Weights & Biases (``WANDB_MODE=offline`` writes ``output_dir/wandb/offline-run-*``)."""

    def __init__(self, run: RunContext) -> None:
        import wandb

        from vtrain.services.redact import redact_config

        config = run.config
        self.wandb = wandb
        run_id, resuming = _wandb_run_id(run)
        self.run = wandb.init(project=config.tracker_project_name or "vtrain", name=config.tracker_run_name,
                              dir=str(run.output_dir), config=redact_config(config.to_json()), reinit="create_new",
                              id=run_id, resume="allow" if resuming else None)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def log_media(self, step: int, artifacts: list[Artifact]) -> None:
        media: dict[str, Any] = {}
        for artifact in artifacts:
            suffix = Path(artifact.path).suffix.lower()
            caption = str(artifact.meta.get("prompt", ""))[:200] or None
            if suffix in VIDEO_SUFFIXES:
                media[media_tag(artifact)] = self.wandb.Video(str(artifact.path), caption=caption)
            elif suffix in IMAGE_SUFFIXES:
                media[media_tag(artifact)] = self.wandb.Image(str(artifact.path), caption=caption)
        if media:
            self.run.log(media, step=step)

    def finish(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def _wandb_run_id(run: RunContext) -> tuple[str, bool]:
    """The wandb run id of this output folder: a resumed run continues the same wandb run.

    The id is kept in ``output_dir/wandb_run_id.txt``; a fresh run (no ``resume_from_checkpoint``)
    starts a new id.
    """
    import secrets

    from vtrain.atomic import atomic_write_bytes

    path = Path(run.output_dir) / "wandb_run_id.txt"
    if run.config.resume_from_checkpoint and path.is_file():
        return path.read_text().strip(), True
    run_id = secrets.token_hex(4)  # wandb ids are lowercase letters and digits
    atomic_write_bytes(path, run_id.encode())
    return run_id, False


class TensorBoardTracker:
    """TensorBoard event files under ``output_dir/tensorboard/<run name>``; videos become animated GIFs."""

    def __init__(self, run: RunContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        name = run.config.tracker_run_name or "run"
        self.log_dir = Path(run.output_dir) / "tensorboard" / name
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, global_step=step)

    def log_media(self, step: int, artifacts: list[Artifact]) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        from vtrain.services.media import gif_bytes, read_frames

        for artifact in artifacts:
            suffix = Path(artifact.path).suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                frames = read_frames(Path(artifact.path))
                image = Summary.Image(height=frames.shape[1], width=frames.shape[2], colorspace=3,
                                      encoded_image_string=gif_bytes(frames, fps=_fps(artifact)))
                summary = Summary(value=[Summary.Value(tag=media_tag(artifact), image=image)])
                self.writer._get_file_writer().add_summary(summary, step)
            elif suffix in IMAGE_SUFFIXES:
                import numpy as np
                from PIL import Image

                pixels = np.asarray(Image.open(artifact.path).convert("RGB"))
                self.writer.add_image(media_tag(artifact), pixels, global_step=step, dataformats="HWC")
        self.writer.flush()

    def finish(self, failed: bool) -> None:
        self.writer.close()


def _fps(artifact: Artifact) -> int:
    return int(artifact.meta.get("fps", 8) or 8)


_FACTORIES = {"wandb": WandbTracker, "tensorboard": TensorBoardTracker}


class _Trackers:
    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers
        self.finished = False

    def finish(self, failed: bool) -> None:
        if not self.finished:
            self.finished = True
            for tracker in self.trackers:
                tracker.finish(failed)


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare the tracker keys."""
    cat = {"category": "trackers"}
    registry.add("report_to", "str", "none",
                 "Trackers: wandb, tensorboard, a name a tracker plugin registers, all or none; comma-separated for "
                 "several (wandb,tensorboard).", **cat)
    registry.add("tracker_project_name", "str", None, "Tracker project (wandb project; default vtrain).", **cat)
    registry.add("tracker_run_name", "str", None,
                 "Tracker run name (wandb run name; tensorboard folder under output_dir/tensorboard).", **cat)


@hookimpl
def register_trackers(register: Any) -> None:
    register("wandb", help="Weights & Biases")
    register("tensorboard", help="TensorBoard event files under output_dir/tensorboard")


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    names = parse_report_to(config.report_to)
    for name in names:
        if importlib.util.find_spec(name) is None:
            problems.add("report_to", f"the {name} package is not installed", f"pip install {name}, or remove it from report_to")
    if not _names(config.report_to):  # SimpleTuner's example configs set them with report_to none
        for key in ("tracker_project_name", "tracker_run_name"):
            note = f"{key}: accepted, no effect in vtrain: report_to is none, so no tracker uses it"
            if config.explicitly_set(key) and note not in config.notices:
                config.notices.append(note)


@hookimpl
def describe_run(run: RunContext) -> list[str] | None:
    names = parse_report_to(run.config.report_to)
    where = {"wandb": f"wandb ({run.output_dir / 'wandb'})",
             "tensorboard": f"tensorboard ({run.output_dir / 'tensorboard' / (run.config.tracker_run_name or 'run')})"}
    return [f"trackers: {', '.join(where[name] for name in names)}"] if names else None


@hookimpl
def on_run_start(run: RunContext) -> None:
    """Start the chosen trackers (main process only)."""
    names = parse_report_to(run.config.report_to)
    if not names or not run.is_main_process or run.bundle is None:
        return
    _state.attach(run.bundle, NAME, _Trackers([_FACTORIES[name](run) for name in names]))


@hookimpl(trylast=True)
def on_step_end(run: RunContext, step: int, logs: Mapping[str, float]) -> None:
    trackers = _state.lookup(run.bundle, NAME)
    if trackers is not None:
        values = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
        for tracker in trackers.trackers:
            tracker.log_scalars(step, values)


@hookimpl
def on_validation(run: RunContext, step: int, artifacts: list[Artifact]) -> None:
    trackers = _state.lookup(run.bundle, NAME)
    if trackers is not None:
        for tracker in trackers.trackers:
            tracker.log_media(step, artifacts)


@hookimpl
def on_run_end(run: RunContext) -> None:
    trackers = _state.lookup(run.bundle, NAME)
    if trackers is not None:
        trackers.finish(failed=False)


@hookimpl
def on_run_error(run: RunContext) -> None:
    trackers = _state.lookup(run.bundle, NAME)
    if trackers is not None:
        trackers.finish(failed=True)
