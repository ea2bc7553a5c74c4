"""Publishing to the Hugging Face hub: ``push_to_hub``, ``push_checkpoints_to_hub``, ``hub_model_id``.

Uploads run on a background thread with retries, so training goes on while a checkpoint
travels. A checkpoint is first hard-linked into a staging folder, so rotation
(``checkpoints_total_limit``) cannot delete it mid-upload. At the end the adapter, the model card
and the last validation media are uploaded and the run waits for every upload. The token comes
from huggingface_hub's login or ``HF_TOKEN``; vtrain never reads it into a file or a log.
``HF_ENDPOINT`` points the client at another server (the tests use a local one).
"""

from __future__ import annotations

import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.errors import VtrainError
from vtrain.hookspecs import hookimpl
from vtrain.services import _state

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

NAME = "hub"
STAGING = ".hub-staging"
_STOP = object()


@dataclass
class Upload:
    """Files (absolute path -> path in the repository) committed together."""

    files: dict[Path, str]
    message: str
    cleanup: Path | None = None
    attempts: int = 0
    error: str | None = None
    transient: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class Uploader:
    """Commits :class:`Upload` jobs to one hub repository from a background thread."""

    def __init__(self, repo_id: str, max_retries: int = 3, backoff: float = 1.0) -> None:
        self.repo_id = repo_id
        self.max_retries = max_retries
        self.backoff = backoff
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.finished: list[Upload] = []
        self._repo_ready = False
        self.thread = threading.Thread(target=self._work, name="vtrain-hub-upload", daemon=True)
        self.thread.start()

    def submit(self, upload: Upload) -> Upload:
        self.jobs.put(upload)
        return upload

    def close(self, timeout: float | None = None) -> None:
        self.jobs.put(_STOP)
        self.thread.join(timeout=timeout)

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            self._run(job)

    def _run(self, job: Upload) -> None:
        from huggingface_hub import get_token

        from vtrain.services.redact import redact_text

        token = get_token() or ""  # whatever its shape: redact_text's patterns only know hf_... tokens
        try:
            for attempt in range(self.max_retries + 1):
                job.attempts = attempt + 1
                try:
                    self._commit(job)
                    job.error = None
                    return
                except Exception as exc:  # any failure is reported; only a transient one is tried again
                    job.error = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                                            secrets=(token,) if token else ())
                    job.transient = is_transient(exc)
                    if not job.transient:
                        break
                    if attempt < self.max_retries:
                        time.sleep(self.backoff * 2**attempt)
            why = (f"after {job.attempts} attempts" if job.transient else
                   "(not retried: the error is not transient, so trying again cannot help)")
            _say(f"warning: hub upload '{job.message}' to {self.repo_id} failed {why}: {job.error}")
        finally:
            if job.cleanup is not None:
                shutil.rmtree(job.cleanup, ignore_errors=True)
            self.finished.append(job)
            job.done.set()

    def _commit(self, job: Upload) -> None:
        from huggingface_hub import CommitOperationAdd, HfApi

        api = HfApi()
        if not self._repo_ready:
            api.create_repo(self.repo_id, exist_ok=True, repo_type="model")
            self._repo_ready = True
        operations = [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=str(src)) for src, dest in job.files.items()]
        api.create_commit(self.repo_id, operations=operations, commit_message=job.message, repo_type="model")


TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_transient(error: BaseException) -> bool:
    """Whether trying again may help: a dropped connection, a timeout, a 5xx, 408 or 429. Authentication
    (401/403), a missing repository, a bad request or a bug in the caller fail the same way every time."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status is not None:
        return int(status) in TRANSIENT_STATUS
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    for module, names in (("httpx", ("TransportError",)), ("requests", ("ConnectionError", "Timeout"))):
        library = sys.modules.get(module)
        if library is not None and isinstance(error, tuple(getattr(library, n) for n in names if hasattr(library, n))):
            return True
    return False


class HubUploadError(VtrainError):
    """The final upload failed: the run exits non-zero; the trained files are still on disk."""

    exit_code = 4


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stage_folder(folder: Path, staging: Path) -> Path:
    """A hard-linked (or copied) snapshot of ``folder`` under ``staging``."""
    target = staging / folder.name
    if target.exists():
        shutil.rmtree(target)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(folder, target, copy_function=link)
    return target


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare the hub keys."""
    cat = {"category": "hub"}
    registry.add("push_to_hub", "bool", False,
                 "Upload the final adapter/model, a model card and the last validation media to hub_model_id.", **cat)
    registry.add("push_checkpoints_to_hub", "bool", False,
                 "Also upload every checkpoint (to checkpoints/checkpoint-N), in the background.", **cat)
    registry.add("hub_model_id", "str", None, "Hub repository (name or owner/name) the uploads go to.", **cat)


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    if not config.push_to_hub:
        if config.push_checkpoints_to_hub:
            problems.add("push_checkpoints_to_hub", "needs push_to_hub", "set push_to_hub to true as well")
        return
    if not config.hub_model_id:
        problems.add("hub_model_id", "push_to_hub needs the repository to upload to", "set hub_model_id, e.g. me/my-lora")
    try:
        from huggingface_hub import constants, get_token
    except ImportError:
        problems.add("push_to_hub", "huggingface_hub is not installed", "pip install huggingface_hub")
        return
    if constants.HF_HUB_OFFLINE:
        problems.add("push_to_hub", "HF_HUB_OFFLINE is set, so nothing can be uploaded",
                     "unset HF_HUB_OFFLINE, or set push_to_hub to false")
    if get_token() is None:
        problems.add("push_to_hub", "no hub token found", "log in with `hf auth login`, or set the HF_TOKEN environment variable")


class _HubRun:
    def __init__(self, uploader: Uploader, staging: Path) -> None:
        self.uploader = uploader
        self.staging = staging


@hookimpl
def describe_run(run: RunContext) -> list[str] | None:
    config = run.config
    if not config.push_to_hub:
        return None
    return [f"hub: push to {config.hub_model_id} at the end" + (", every checkpoint too" if config.push_checkpoints_to_hub else "")]


@hookimpl
def on_run_start(run: RunContext) -> None:
    config = run.config
    if not config.push_to_hub or not run.is_main_process or run.bundle is None:
        return
    _state.attach(run.bundle, NAME, _HubRun(Uploader(config.hub_model_id), run.output_dir / STAGING))


@hookimpl
def on_checkpoint(run: RunContext, step: int, path: Path) -> None:
    service = _state.lookup(run.bundle, NAME)
    if service is None or not run.config.push_checkpoints_to_hub:
        return
    snapshot = stage_folder(Path(path), service.staging)
    files = {f: f"checkpoints/{Path(path).name}/{f.relative_to(snapshot).as_posix()}"
             for f in sorted(snapshot.rglob("*")) if f.is_file()}
    service.uploader.submit(Upload(files, f"checkpoint at step {step}", cleanup=snapshot))


@hookimpl
def on_run_end(run: RunContext, result: Any) -> None:
    service = _state.lookup(run.bundle, NAME)
    if service is None:
        return
    from vtrain.services import model_card
    from vtrain.training.prompts import collect_prompts

    output_dir = Path(result.output_dir)
    media = _last_validation_media(result.validation)
    card = model_card.render(run.config, run.family, run.config.hub_model_id, result.steps, collect_prompts(run.config),
                             media, output_dir)
    readme = model_card.write(output_dir / "README.md", card)
    files = {readme: "README.md"}
    for path in [*result.model_paths, *media]:
        files[Path(path)] = Path(path).relative_to(output_dir).as_posix()
    final = service.uploader.submit(Upload(files, f"vtrain: {run.family.name} {run.config.model_type}, {result.steps} updates"))
    _say(f"uploading to the hub repository {run.config.hub_model_id} ...")
    service.uploader.close()
    shutil.rmtree(service.staging, ignore_errors=True)
    failed = [job for job in service.uploader.finished if job.error]
    if final.error is None:
        _say(f"  hub           {run.config.hub_model_id}: {len(files)} files"
             + (f" ({len(failed)} earlier upload(s) failed)" if failed else ""))
        return
    kept = "\n".join(f"    {path}" for path in files)
    raise HubUploadError(
        f"the upload to the hub repository {run.config.hub_model_id} failed: {final.error}"
        + (f" (after {final.attempts} attempts)" if final.transient else " (not retried: not a transient error)")
        + f".\n  The trained files are kept on disk:\n{kept}\n"
        f"  Upload them once the cause is fixed: hf upload {run.config.hub_model_id} {output_dir}")


@hookimpl
def on_run_error(run: RunContext) -> None:
    service = _state.lookup(run.bundle, NAME)
    if service is not None:
        service.uploader.close(timeout=60)  # let a checkpoint upload in flight finish, within reason


def _last_validation_media(paths: list[Path]) -> list[Path]:
    media = [Path(p) for p in paths if Path(p).suffix.lower() in model_card_suffixes()]
    if not media:
        return []
    last_folder = media[-1].parent
    return [p for p in media if p.parent == last_folder]


def model_card_suffixes() -> tuple[str, ...]:
    from vtrain.services.model_card import MEDIA_SUFFIXES

    return MEDIA_SUFFIXES
