"""Webhooks: every event arrives with its payload; slow or failing receivers never stall training; no secret leaks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from receiver import Receiver
from test_trackers import VideoValidation

from vtrain.hookspecs import hookimpl

SECRET_PATH = "hook/s3cr3t-path-token-9f8e7d"
SECRET_HEADER = "Bearer s3cr3t-header-token-1a2b3c"


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


def _targets(url: str, **extra) -> list[dict]:
    return [
        {"webhook_type": "raw", "webhook_url": f"{url}/{SECRET_PATH}", "log_level": "info", "message_prefix": "box-1",
         "headers": {"Authorization": SECRET_HEADER}, "progress_interval": 2, **extra},
        {"webhook_type": "discord", "webhook_url": f"{url}/discord/{SECRET_PATH}", "log_level": "info",
         "progress_interval": 2, **extra},
    ]


def _run_config(base: dict, targets, **extra) -> dict:
    return dict(base, webhook_config=targets, max_train_steps=4, checkpoint_step_interval=2,
                validation_prompt="a cube", validation_num_inference_steps=4, validation_preview=True,
                validation_preview_steps=2, **extra)


def _assert_no_secret(output_dir: Path, *texts: str) -> None:
    for path in output_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"s3cr3t" not in data, path
    for text in texts:
        assert "s3cr3t" not in text


def test_every_event_arrives_with_its_payload(tinyflow_config, service_runner, receiver, capfd):
    config = _run_config(tinyflow_config, _targets(receiver.url))
    service_runner(config, plugins=(VideoValidation(),)).run()
    raw = [r.json() for r in receiver.requests if r.path == f"/{SECRET_PATH}"]
    discord = [r for r in receiver.requests if r.path.startswith("/discord/")]
    events = [e["event"] for e in raw]
    assert events[0] == "run_start" and events[-1] == "run_end"
    assert [e["step"] for e in raw if e["event"] == "progress"] == [2, 4]
    assert [e["step"] for e in raw if e["event"] == "checkpoint"] == [2, 4]
    assert [e["step"] for e in raw if e["event"] == "validation"] == [0, 4]
    previews = [e for e in raw if e["event"] == "validation_preview"]
    assert [(e["step"], e["data"]["sampling_step"]) for e in previews] == [(0, 2), (0, 4), (4, 2), (4, 4)]
    assert all(e["media"][0]["mime_type"] == "image/gif" for e in previews)
    validation = [e for e in raw if e["event"] == "validation"][-1]
    assert validation["media"][0]["name"] == "clip.mp4" and validation["media"][0]["base64"]
    assert all(e["message"].startswith("box-1: ") for e in raw)
    progress = [e for e in raw if e["event"] == "progress"][0]
    assert {"loss", "lr", "step_seconds", "samples_per_second"} <= set(progress["data"])
    assert all(r.headers["Authorization"] == SECRET_HEADER for r in receiver.requests if r.path == f"/{SECRET_PATH}")
    # discord: the same events, validation media as multipart attachments
    assert len(discord) == len(raw)
    multipart = [r for r in discord if r.headers["Content-Type"].startswith("multipart/form-data")]
    assert any(b'filename="clip.mp4"' in r.body for r in multipart)
    assert all(json.loads(r.body)["content"] for r in discord if r not in multipart)
    out, err = capfd.readouterr()
    _assert_no_secret(Path(config["output_dir"]), out, err)
    run_info = json.loads((Path(config["output_dir"]) / "run_info.json").read_text())
    saved = run_info["config"]["webhook_config"]  # the structure is kept; URLs' paths and headers are not
    assert [t["webhook_url"] for t in saved] == [f"{receiver.url}/<redacted>"] * 2
    assert saved[0]["headers"] == {"Authorization": "<redacted>"}


def test_log_level_filters_events(tinyflow_config, service_runner, receiver):
    target = {"webhook_type": "raw", "webhook_url": receiver.url + "/x", "log_level": "critical"}

    class Crash:
        name = "crash"

        @hookimpl
        def on_step_end(self, step):
            if step == 2:
                raise RuntimeError("boom at step 2")

    with pytest.raises(RuntimeError):
        service_runner(dict(tinyflow_config, webhook_config=target), plugins=(Crash(),)).run()
    events = [r.json() for r in receiver.requests]
    assert [(e["event"], e["level"], e["step"]) for e in events] == [("error", "critical", 2)]
    assert "RuntimeError: boom at step 2" in events[0]["message"]


def test_error_event_never_carries_a_target_secret(tinyflow_config, service_runner, receiver):
    targets = _targets(receiver.url)
    leaked = f"could not reach {targets[1]['webhook_url']} with {SECRET_HEADER}"

    class Crash:
        name = "crash"

        @hookimpl
        def on_step_end(self, step):
            if step == 1:
                raise RuntimeError(leaked)

    with pytest.raises(RuntimeError):
        service_runner(dict(tinyflow_config, webhook_config=targets), plugins=(Crash(),)).run()
    errors = [r.body.decode() for r in receiver.requests if b"training stopped" in r.body]
    assert len(errors) == 2 and all("s3cr3t" not in body and "<redacted>" in body for body in errors)


def _timed_run(service_runner, config) -> float:
    started = time.perf_counter()
    result = service_runner(config).run()
    assert result.steps == config["max_train_steps"]
    return time.perf_counter() - started


def test_hanging_or_failing_receivers_do_not_stall_training(tinyflow_config, service_runner, tmp_path, capfd):
    hanging = Receiver(hang=30.0).start()
    failing = Receiver(respond=lambda request: (500, {"error": "down"})).start()
    try:
        base = dict(tinyflow_config, max_train_steps=8, checkpoint_step_interval=2)
        baseline = _timed_run(service_runner, dict(base, output_dir=str(tmp_path / "plain")))
        targets = [
            {"webhook_type": "raw", "webhook_url": f"{hanging.url}/{SECRET_PATH}", "timeout": 0.5, "max_retries": 1,
             "progress_interval": 1},
            {"webhook_type": "discord", "webhook_url": f"{failing.url}/{SECRET_PATH}", "timeout": 0.5, "max_retries": 2,
             "progress_interval": 1},
        ]
        slow = _timed_run(service_runner, dict(base, output_dir=str(tmp_path / "hooks"), webhook_config=targets))
        # the only wait is the bounded drain at the end: the slowest target's timeout x (retries + 1) + 1 s
        print(f"run without webhooks {baseline:.2f}s, with a hanging and a failing receiver {slow:.2f}s")
        assert slow - baseline < 0.5 * 3 + 1 + 1.5, (baseline, slow)
        assert len(failing.requests) >= 3  # retried
        assert hanging.requests
        _out, err = capfd.readouterr()
        assert "webhook #2 (discord): could not send" in err and "HTTP 500" in err
        assert "s3cr3t" not in err and "s3cr3t" not in _out
    finally:
        hanging.stop()
        failing.stop()


def test_full_queue_drops_events_instead_of_blocking():
    from vtrain.services.webhook_targets import Event, WebhookTarget
    from vtrain.services.webhooks import Sender

    hanging = Receiver(hang=5.0).start()
    try:
        target = WebhookTarget(index=0, kind="raw", url=hanging.url, timeout=0.2, max_retries=0, queue_size=2)
        sender = Sender(target)
        started = time.perf_counter()
        for step in range(50):
            sender.submit(Event("progress", "info", "x", step=step))
        assert time.perf_counter() - started < 0.5
        assert sender.dropped >= 45
        sender.close(wait_seconds=1.0)
    finally:
        hanging.stop()


@pytest.mark.parametrize("bad, message", [
    ({"webhook_type": "slack", "webhook_url": "http://x"}, "webhook_type must be one of"),
    ({"webhook_url": "ftp://s3cr3t"}, "webhook_url must be an http(s) URL"),
    ({"webhook_url": "http://s3cr3t", "log_level": "loud"}, "log_level must be one of"),
    ({"webhook_url": "http://s3cr3t", "colour": "red"}, "unknown keys"),
])
def test_bad_webhook_config_is_refused_without_echoing_the_url(bad, message, tinyflow_config, service_runner):
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        service_runner(dict(tinyflow_config, webhook_config=bad))
    assert message in str(info.value) and "s3cr3t" not in str(info.value)


def test_webhook_config_from_a_file(tinyflow_config, service_runner, receiver, tmp_path):
    path = tmp_path / "webhook.json"
    path.write_text(json.dumps({"webhook_type": "raw", "webhook_url": receiver.url + "/f", "log_level": "info"}))
    config = dict(tinyflow_config, webhook_config=str(path), max_train_steps=2)
    service_runner(config).run()
    assert [r.json()["event"] for r in receiver.requests] == ["run_start", "progress", "progress", "run_end"]
    run_info = json.loads((Path(config["output_dir"]) / "run_info.json").read_text())
    assert run_info["config"]["webhook_config"] == str(path)


def test_preview_needs_a_webhook(tinyflow_config, service_runner):
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="validation_preview: has no effect without webhook_config"):
        service_runner(dict(tinyflow_config, validation_preview=True))
