"""Secrets never shown (config show, validate, summary, run_info, model card) and webhook redirects never
followed: real CLI processes, real files and real local HTTP servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from receiver import Receiver

SECRET = "s3cr3t-0f-the-user"
VTRAIN = [sys.executable, "-m", "vtrain"]


def _webhooks(url: str) -> list[dict]:
    return [{"webhook_type": "raw", "webhook_url": f"{url}/hook?token={SECRET}",
             "headers": {"Authorization": f"Bearer {SECRET}"}},
            {"webhook_type": "discord", "webhook_url": f"https://discord.com/api/webhooks/123/{SECRET}"}]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The installed command in a child process (as a user runs it)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([*VTRAIN, *args], capture_output=True, text=True, env=env, timeout=300)


def _main(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """The same command in this process (``vtrain.cli.main``), for the checks that need no child."""
    from vtrain.cli import main

    code = main([*args, "-p", "no:example"])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_config_show_and_validate_redact_webhook_urls_and_headers(tmp_path: Path, capsys) -> None:
    config = {"model_family": "tinyflow", "max_train_steps": 3, "output_dir": str(tmp_path / "out"),
              "webhook_config": _webhooks("http://127.0.0.1:9")}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    for extra in ([], ["--json"]):
        proc = _main(capsys, "config", "show", "--config", str(path), *extra)
        assert proc.returncode == 0, proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
        assert "<redacted>" in proc.stdout and "127.0.0.1" in proc.stdout  # the host stays, to tell targets apart
    shown = json.loads(_main(capsys, "config", "show", "--config", str(path), "--json").stdout)
    assert shown["webhook_config"]["value"][0]["headers"] == {"Authorization": "<redacted>"}

    inline = json.dumps(_webhooks("http://127.0.0.1:9")[0])  # given on the command line, as a JSON string
    proc = _main(capsys, "config", "show", "--config", str(path), "--webhook_config", inline)
    assert proc.returncode == 0 and SECRET not in proc.stdout, proc.stdout

    # a failing validation does not echo the secret either, whichever key it sits in
    path.write_text(json.dumps({**config, "hub_model_id": {"token": SECRET}, "lora_rank": "many"}))
    proc = _main(capsys, "config", "validate", str(path))
    assert proc.returncode == 2 and "hub_model_id" in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    proc = _main(capsys, "config", "validate", str(path), "--validation_prompt",
                f"see https://example.com/x?sig={SECRET} Authorization: Bearer {SECRET}")
    assert SECRET not in proc.stdout + proc.stderr


def test_summary_run_info_and_model_card_hold_no_secret(tmp_path: Path, capsys) -> None:
    receiver = Receiver().start()
    try:
        config = {"model_family": "tinyflow", "max_train_steps": 2, "output_dir": str(tmp_path / "out"),
                  "train_batch_size": 2, "tinyflow_num_samples": 4, "mixed_precision": "no",
                  "webhook_config": _webhooks(receiver.url)[:1]}
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        proc = _main(capsys, "run", "--config", str(path))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "vtrain run" in proc.stdout and SECRET not in proc.stdout + proc.stderr
        assert receiver.requests and receiver.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    finally:
        receiver.stop()
    for file in (tmp_path / "out").rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file

    from vtrain.runner import Runner
    from vtrain.services import model_card

    base = f"https://user:{SECRET}@models.example/tiny?token={SECRET}"
    runner = Runner.from_config({**config, "pretrained_model_name_or_path": base}, blocked=["example"])
    card = model_card.render(runner.config, runner.family, "me/tiny", 2, {"cube": "a cube"}, [], tmp_path)
    assert SECRET not in card and "models.example" in card


class _Redirector:
    """Answers every request with a redirect to ``location``; records what it was sent."""

    def __init__(self, location: str, code: int = 302) -> None:
        self.requests: list[tuple[str, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.requests.append((self.command, dict(self.headers.items())))
                self.send_response(code)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("code", [302, 307])
def test_webhook_redirect_is_not_followed_and_reported_once(code: int, tmp_path: Path, capsys) -> None:
    elsewhere = Receiver().start()  # another port: where a hostile or misconfigured receiver points
    redirector = _Redirector(f"{elsewhere.url}/collect", code)
    try:
        target = {"webhook_type": "raw", "webhook_url": f"{redirector.url}/hook/{SECRET}",
                  "headers": {"Authorization": f"Bearer {SECRET}"}, "progress_interval": 1, "max_retries": 3}
        config = {"model_family": "tinyflow", "max_train_steps": 4, "output_dir": str(tmp_path / "out"),
                  "train_batch_size": 2, "tinyflow_num_samples": 4, "mixed_precision": "no",
                  "webhook_config": [target]}
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        proc = _main(capsys, "run", "--config", str(path))
    finally:
        redirector.stop()
        elsewhere.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert elsewhere.requests == [], "the redirect was followed (with the Authorization header)"
    assert len(redirector.requests) == 1  # not retried, and no later event is tried on a given-up target
    warnings = [line for line in proc.stderr.splitlines() if "webhook #1" in line]
    assert len(warnings) == 1 and "redirect" in warnings[0] and "failed target" in warnings[0], proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
