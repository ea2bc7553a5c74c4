"""Webhook notifications (``webhook_config``): run start, progress, checkpoints, validation media,
validation previews, errors and the finish, to Discord or any JSON endpoint.

Each target has its own bounded queue and background thread: training only ever enqueues, so a
receiver that is down, slow or failing never stalls or stops the run. Deliveries time out, are
retried with back-off on connection errors, 5xx and 429, and are dropped (with a warning that
names the target by number, never by URL) when the queue is full. At the end the queues get a
bounded time to drain.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtrain.hookspecs import hookimpl
from vtrain.services import _state
from vtrain.services.webhook_targets import (
    DeliveryError,
    Event,
    WebhookConfigError,
    WebhookTarget,
    deliver,
    load_targets,
)

if TYPE_CHECKING:
    from vtrain.config import ResolvedConfig
    from vtrain.errors import ProblemCollector
    from vtrain.family import Artifact, ModelBundle, ModelFamily
    from vtrain.options import OptionsRegistry
    from vtrain.run import RunContext

NAME = "webhooks"
MEDIA_SUFFIXES = (".mp4", ".gif", ".webm", ".png", ".jpg", ".jpeg", ".webp")
_STOP = object()


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Sender:
    """Delivers events to one target from a background thread through a bounded queue."""

    def __init__(self, target: WebhookTarget) -> None:
        self.target = target
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=target.queue_size)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.given_up = False  # a permanent failure (a redirect): later events are not tried
        self.abandoned = threading.Event()  # set when close() gives up: the worker stops at once
        self.thread = threading.Thread(target=self._work, name=f"vtrain-{target}", daemon=True)
        self.thread.start()

    def submit(self, event: Event) -> None:
        """Enqueue without blocking; a full queue drops the event."""
        if not self.target.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                _warn(f"{self.target}: the receiver is falling behind; events are being dropped")

    def drain_seconds(self) -> float:
        """The longest the end of a run waits for this target: one event's worst case, plus a second."""
        return self.target.timeout * (self.target.max_retries + 1) + 1.0

    def close(self, wait_seconds: float) -> None:
        """Let the queue drain for at most ``wait_seconds``, then stop."""
        deadline = time.monotonic() + wait_seconds
        self.request_stop(deadline)
        self.finish(deadline)

    def request_stop(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                self.queue.put(_STOP, timeout=max(0.01, deadline - time.monotonic()))
                return
            except queue.Full:
                continue

    def finish(self, deadline: float) -> None:
        self.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            self.abandoned.set()
            _warn(f"{self.target}: gave up waiting for {self.queue.qsize()} undelivered event(s)")

    def _work(self) -> None:
        while not self.abandoned.is_set():
            event = self.queue.get()
            if event is _STOP:
                return
            self._deliver_with_retries(event)

    def _deliver_with_retries(self, event: Event) -> None:
        from vtrain.services.redact import redact_text

        if self.given_up:
            self.failed += 1
            return
        for attempt in range(self.target.max_retries + 1):
            if self.abandoned.is_set():
                return
            try:
                deliver(self.target, event)
                self.delivered += 1
                return
            except DeliveryError as exc:
                reason = redact_text(str(exc), self.target.secrets)
                if self.abandoned.is_set():
                    return
                if exc.permanent:
                    self.failed += 1
                    self.given_up = True
                    _warn(f"{self.target}: failed target: {reason}; training goes on without it")
                    return
                if not exc.retry or attempt == self.target.max_retries:
                    self.failed += 1
                    _warn(f"{self.target}: could not send the {event.name!r} event ({reason}); training goes on")
                    return
                time.sleep(min(0.25 * 2**attempt, 4.0))
            except Exception as exc:  # a bug in delivery must never reach the training thread
                self.failed += 1
                _warn(f"{self.target}: {type(exc).__name__} while sending {event.name!r}; training goes on")
                return


class Dispatcher:
    """Fans events out to every target's :class:`Sender`."""

    def __init__(self, targets: list[WebhookTarget], total_steps: int = 0) -> None:
        self.senders = [Sender(target) for target in targets]
        self.total_steps = total_steps
        self.closed = False

    def send(self, event: Event) -> None:
        for sender in self.senders:
            if event.name == "progress" and event.step is not None:
                interval = sender.target.progress_interval or max(1, self.total_steps // 10)
                if event.step % interval:
                    continue
            sender.submit(event)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.senders:
            return
        deadline = time.monotonic() + max(sender.drain_seconds() for sender in self.senders)  # targets drain in parallel
        for sender in self.senders:
            sender.request_stop(deadline)
        for sender in self.senders:
            sender.finish(deadline)


class _WebhookRun:
    def __init__(self, dispatcher: Dispatcher, family: ModelFamily, output_dir: Path) -> None:
        self.dispatcher = dispatcher
        self.family = family
        self.output_dir = output_dir
        self.preview_decoder: Any = None


@hookimpl
def add_options(registry: OptionsRegistry) -> None:
    """Declare the webhook and preview keys."""
    cat = {"category": "webhooks"}
    registry.add("webhook_config", "json", None,
                 "Webhook targets: a JSON object or list (discord or raw), or a path to a JSON file with them. "
                 "URLs and headers are secret: never logged or saved.", **cat)
    registry.add("validation_preview", "bool", False,
                 "Send intermediate decodes of validation renders through the webhooks (needs a family with a "
                 "preview decoder).", **cat)
    registry.add("validation_preview_steps", "int", 1, "Send a preview every N sampling steps.", minimum=1, **cat)


@hookimpl
def validate_config(config: ResolvedConfig, family: ModelFamily, problems: ProblemCollector) -> None:
    from vtrain.family import PreviewDecoder

    try:
        targets = load_targets(config.webhook_config)
    except WebhookConfigError as exc:
        problems.add("webhook_config", str(exc), "see docs/options.md for the webhook target keys")
        targets = []
    if config.validation_preview:
        if not targets and config.webhook_config is None:
            problems.add("validation_preview", "has no effect without webhook_config", "set webhook_config, or remove the key")
        if not isinstance(family, PreviewDecoder):
            problems.add("validation_preview", f"the {family.name!r} family has no preview decoder",
                         "remove validation_preview (or use a family that names a tiny autoencoder)")
    elif config.explicitly_set("validation_preview_steps"):
        problems.add("validation_preview_steps", "has no effect because validation_preview is false",
                     "set validation_preview to true, or remove the key")


@hookimpl
def describe_run(run: RunContext) -> list[str] | None:
    if not run.config.webhook_config:
        return None
    targets = load_targets(run.config.webhook_config)
    kinds = ", ".join(f"{t.kind} ({t.log_level})" for t in targets)
    preview = f", previews every {run.config.validation_preview_steps} sampling step(s)" if run.config.validation_preview else ""
    return [f"webhooks: {len(targets)} target(s): {kinds}{preview}"]


@hookimpl
def on_run_start(run: RunContext) -> None:
    config = run.config
    if not config.webhook_config or not run.is_main_process or run.bundle is None:
        return
    total = config.max_train_steps or 0
    service = _WebhookRun(Dispatcher(load_targets(config.webhook_config), total), run.family, run.output_dir)
    _state.attach(run.bundle, NAME, service)
    service.dispatcher.send(Event("run_start", "info", f"training started: {run.family.name} {config.model_type}, "
                                  f"{total or '?'} updates, output {run.output_dir.name}", data={"max_steps": total}))


@hookimpl
def on_step_end(run: RunContext, step: int, logs: Mapping[str, float]) -> None:
    service = _state.lookup(run.bundle, NAME)
    if service is None:
        return
    service.dispatcher.total_steps = run.state.max_steps if run.state else service.dispatcher.total_steps
    values = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
    total = service.dispatcher.total_steps
    service.dispatcher.send(Event("progress", "info", f"step {step}/{total}: loss {values.get('loss', float('nan')):.4f}",
                                  step=step, data=values))


@hookimpl
def on_checkpoint(run: RunContext, step: int, path: Path) -> None:
    service = _state.lookup(run.bundle, NAME)
    if service is not None:
        service.dispatcher.send(Event("checkpoint", "info", f"checkpoint saved at step {step}: {Path(path).name}",
                                      step=step, data={"checkpoint": Path(path).name}))


@hookimpl
def on_validation(run: RunContext, step: int, artifacts: list[Artifact]) -> None:
    service = _state.lookup(run.bundle, NAME)
    if service is None:
        return
    files = [Path(a.path) for a in artifacts if Path(a.path).suffix.lower() in MEDIA_SUFFIXES]
    names = [Path(a.path).name for a in artifacts]
    service.dispatcher.send(Event("validation", "info", f"validation at step {step}: {len(artifacts)} file(s)",
                                  step=step, data={"files": names}, files=files))


@hookimpl
def on_run_end(run: RunContext, result: Any) -> None:
    service = _state.lookup(run.bundle, NAME)
    if service is None:
        return
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    service.dispatcher.send(Event("run_end", "info", f"training finished: {result.steps} updates in "
                                  f"{result.seconds:.0f}s, final loss {loss}", step=result.steps,
                                  data={"steps": result.steps, "final_loss": result.final_loss,
                                        "model_files": [Path(p).name for p in result.model_paths]}))
    service.dispatcher.close()


@hookimpl
def on_run_error(run: RunContext, error: BaseException) -> None:
    if not run.is_main_process or not run.config.webhook_config:
        return
    service = _state.lookup(run.bundle, NAME)
    if service is None:  # failed before the run started: send this one event
        try:
            service = _WebhookRun(Dispatcher(load_targets(run.config.webhook_config)), run.family, run.output_dir)
        except WebhookConfigError:
            return
    if service.dispatcher.closed:
        return
    from vtrain.services.redact import redact_text

    step = run.state.step if run.state else None
    secrets = tuple(secret for sender in service.dispatcher.senders for secret in sender.target.secrets)
    message = redact_text(f"training stopped: {type(error).__name__}: {error}", secrets)[:1500]
    service.dispatcher.send(Event("error", "critical", message, step=step, data={"error": type(error).__name__}))
    service.dispatcher.close()


@hookimpl(wrapper=True)
def validate(bundle: ModelBundle, config: ResolvedConfig, step: int, prompts: Mapping[str, str]) -> Any:
    """While validation renders, send a preview every ``validation_preview_steps`` sampling steps."""
    service = _state.lookup(bundle, NAME)
    if service is None or not config.validation_preview:
        return (yield)
    from vtrain.services import preview

    if service.preview_decoder is None:
        service.preview_decoder = service.family.preview_decoder(bundle, config)
    folder = service.output_dir / "validation" / f"step-{step}" / "previews"

    def observe(nickname: str, index: int, total: int, latents: Any) -> None:
        if (index + 1) % config.validation_preview_steps and index + 1 != total:
            return
        path = preview.write_preview(service.preview_decoder, latents, folder / f"{nickname}-{index + 1:03d}")
        service.dispatcher.send(Event("validation_preview", "info",
                                      f"preview of {nickname!r} at sampling step {index + 1}/{total} (training step {step})",
                                      step=step, data={"prompt": nickname, "sampling_step": index + 1,
                                                       "sampling_steps": total}, files=[path]))

    with preview.observing(bundle, observe):
        return (yield)
