"""Hub publishing against a local server that answers like the hub and records what the real client sends."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from receiver import Receiver, Request
from test_trackers import VideoValidation

TOKEN = "hf_" + "s3cr3tT0kenForTheLocalHub0123"


class FakeHub:
    """Answers create_repo, preupload (every file "regular") and commit; fails the first create_repo."""

    def __init__(self) -> None:
        self.creates = 0
        self.commits: list[dict] = []
        self.validated: list[str] = []
        self.receiver = Receiver(respond=self.respond)

    def respond(self, request: Request):
        if request.path == "/api/repos/create":
            self.creates += 1
            if self.creates == 1:
                return 500, {"error": "try again"}
            return 200, {"url": f"{self.receiver.url}/me/tiny-lora"}
        if request.path == "/api/validate-yaml":  # the client checks the model card's front matter
            self.validated.append(request.json()["content"])
            return 200, {"errors": [], "warnings": []}
        if "/preupload/" in request.path:
            files = request.json()["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        if "/commit/" in request.path:
            lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
            header = next(line["value"] for line in lines if line["key"] == "header")
            files = {line["value"]["path"]: base64.b64decode(line["value"]["content"])
                     for line in lines if line["key"] == "file"}
            self.commits.append({"summary": header["summary"], "files": files, "path": request.path,
                                 "auth": request.headers.get("Authorization") or request.headers.get("authorization")})
            return 200, {"commitUrl": f"{self.receiver.url}/me/tiny-lora/commit/{len(self.commits)}",
                         "commitOid": f"{len(self.commits):040x}"}
        return 404, {"error": f"unexpected {request.method} {request.path}"}


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    fake = FakeHub()
    fake.receiver.start()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", fake.receiver.url)
    monkeypatch.setattr(constants, "ENDPOINT", fake.receiver.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    yield fake
    fake.receiver.stop()


def test_push_uploads_lora_model_card_videos_and_checkpoints(tinyflow_config, service_runner, hub, capfd):
    import vtrain.services.hub as hub_service

    config = dict(tinyflow_config, push_to_hub=True, push_checkpoints_to_hub=True, hub_model_id="me/tiny-lora",
                  max_train_steps=4, checkpoint_step_interval=2, use_ema=True, validation_prompt="a red cube",
                  validation_num_inference_steps=2)
    original = hub_service.Uploader.__init__
    hub_service.Uploader.__init__ = lambda self, repo_id: original(self, repo_id, max_retries=3, backoff=0.05)
    try:
        result = service_runner(config, plugins=(VideoValidation(),)).run()
    finally:
        hub_service.Uploader.__init__ = original
    assert hub.creates == 2  # the first attempt failed with a 500 and was retried
    assert all(c["path"] == "/api/models/me/tiny-lora/commit/main" for c in hub.commits)
    assert all(c["auth"] == f"Bearer {TOKEN}" for c in hub.commits)  # the token came from HF_TOKEN
    checkpoint_commits = [c for c in hub.commits if c["summary"].startswith("checkpoint")]
    assert [c["summary"] for c in checkpoint_commits] == ["checkpoint at step 2", "checkpoint at step 4"]
    assert "checkpoints/checkpoint-2/trainable.safetensors" in checkpoint_commits[0]["files"]
    final = hub.commits[-1]["files"]
    out = Path(config["output_dir"])
    assert final["adapter_model.safetensors"] == (out / "adapter_model.safetensors").read_bytes()
    assert final["ema/adapter_model.safetensors"] == (out / "ema" / "adapter_model.safetensors").read_bytes()
    assert final["validation/step-4/clip.mp4"] == (out / "validation" / "step-4" / "clip.mp4").read_bytes()
    card = final["README.md"].decode()
    assert card.startswith("---\nlibrary_name: diffusers")
    for text in ("- tinyflow", "- lora", "a red cube", "[clip.mp4](validation/step-4/clip.mp4)", "| lora_rank | 4 |",
                 'pipe.load_lora_weights(\'me/tiny-lora\')', "trained with vtrain for 4 updates"):
        assert text in card, text
    assert hub.validated and hub.validated[-1] == card
    assert not (out / ".hub-staging").exists()
    assert result.steps == 4
    stdout, stderr = capfd.readouterr()
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in stdout + stderr


def test_push_without_repository_or_token_is_refused(tinyflow_config, service_runner, hub, monkeypatch):
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="hub_model_id: push_to_hub needs the repository"):
        service_runner(dict(tinyflow_config, push_to_hub=True))
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(Path(tinyflow_config["output_dir"]).parent / "hf-home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", "/nonexistent/token")
    with pytest.raises(ConfigError, match="no hub token found"):
        service_runner(dict(tinyflow_config, push_to_hub=True, hub_model_id="me/x"))


def test_checkpoints_need_push_to_hub(tinyflow_config, service_runner):
    from vtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="push_checkpoints_to_hub: needs push_to_hub"):
        service_runner(dict(tinyflow_config, push_checkpoints_to_hub=True))


class FailingHub(FakeHub):
    """A hub that answers create_repo with ``statuses`` in turn (then 200), like an expired token or an outage."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__()
        self.statuses = list(statuses)

    def respond(self, request: Request):
        if request.path == "/api/repos/create":
            self.creates += 1
            if self.statuses:
                status = self.statuses.pop(0)
                return status, {"error": {401: "Invalid credentials", 503: "Service unavailable"}.get(status, "no")}
            return 200, {"url": f"{self.receiver.url}/me/tiny-lora"}
        return super().respond(request)


def _point_hub_at(monkeypatch, fake) -> None:
    from huggingface_hub import constants

    import vtrain.services.hub as hub_service

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", fake.receiver.url)
    monkeypatch.setattr(constants, "ENDPOINT", fake.receiver.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    original = hub_service.Uploader.__init__
    monkeypatch.setattr(hub_service.Uploader, "__init__",
                        lambda self, repo_id: original(self, repo_id, max_retries=3, backoff=0.05))


def test_failed_final_upload_is_not_retried_when_permanent_and_exits_non_zero(tinyflow_config, monkeypatch, capsys):
    from vtrain.cli import main

    fake = FailingHub([401] * 10)
    fake.receiver.start()
    _point_hub_at(monkeypatch, fake)
    monkeypatch.setenv("VTRAIN_DISABLE_PLUGIN_AUTOLOAD", "1")
    config = dict(tinyflow_config, push_to_hub=True, hub_model_id="me/tiny-lora", max_train_steps=2)
    path = Path(tinyflow_config["output_dir"]).parent / "config.json"
    path.write_text(json.dumps(config))
    try:
        code = main(["run", "--config", str(path), "-p", "vtrain.testing.plugin", "-p", "vtrain.services.hub"])
    finally:
        fake.receiver.stop()
    err = capsys.readouterr().err
    assert code == 4, err[-3000:]
    assert fake.creates == 1  # an authentication error is never retried
    assert "the upload to the hub repository me/tiny-lora failed" in err and "401" in err
    assert "not retried" in err and "Traceback" not in err
    out = Path(config["output_dir"])
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
    assert f"    {out / 'adapter_model.safetensors'}" in err  # the trained files stay, with their paths
    assert TOKEN not in err


def test_transient_hub_errors_are_retried(tinyflow_config, service_runner, monkeypatch, capfd):
    fake = FailingHub([503, 503])
    fake.receiver.start()
    _point_hub_at(monkeypatch, fake)
    try:
        result = service_runner(dict(tinyflow_config, push_to_hub=True, hub_model_id="me/tiny-lora",
                                     max_train_steps=2)).run()
    finally:
        fake.receiver.stop()
    assert result.steps == 2 and fake.creates == 3 and len(fake.commits) == 1
    assert "hub           me/tiny-lora" in capfd.readouterr().err


def test_only_transient_errors_count_as_transient() -> None:
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    from vtrain.services.hub import is_transient

    def http_error(status: int) -> HfHubHTTPError:
        request = httpx.Request("POST", "http://127.0.0.1/api/repos/create")
        return HfHubHTTPError(f"{status}", response=httpx.Response(status, request=request))

    assert [is_transient(http_error(s)) for s in (500, 502, 503, 429, 408)] == [True] * 5
    assert [is_transient(http_error(s)) for s in (400, 401, 403, 404, 409)] == [False] * 5
    assert is_transient(httpx.ConnectError("refused")) and is_transient(TimeoutError())
    assert not is_transient(KeyError("bug")) and not is_transient(ValueError("bad repo id"))
