"""API tests of ``vtrain serve``: every endpoint, the security cases, and a real tinyflow run started,
stopped and resumed through the API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_helpers import Served, make_fake_run, start_server, tinyflow_config, write_video

from vtrain_serve import runs
from vtrain_serve.app import Dashboard
from vtrain_serve.files import Refused, byte_range, safe_path


def test_runs_list_reads_the_files(served: Served) -> None:
    status, data = served.json("/api/runs")
    assert status == 200
    by_name = {r["name"]: r for r in data["runs"]}
    assert set(by_name) == {"alpha", "beta"}
    alpha, beta = by_name["alpha"], by_name["beta"]
    assert alpha["id"] == "0/alpha" and beta["id"] == "0/group/beta"
    assert alpha["status"] == "finished" and alpha["step"] == 10 and alpha["total"] == 10  # torn line skipped
    assert alpha["loss"] == pytest.approx(0.1) and alpha["family"] == "tinyflow"
    assert beta["status"] == "failed"  # no outputs, lock emptied: ended on an error


def test_status_killed_and_running(tmp_path: Path) -> None:
    folder = make_fake_run(tmp_path / "r", finished=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / ".vtrain.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert runs.run_status(folder) == "killed"  # the lock still names a process that is gone
    (folder / ".vtrain.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert runs.run_status(folder) == "running"
    assert runs.run_status(tmp_path / "r", child_code=130) == "running"  # the live holder wins
    (folder / ".vtrain.lock").write_text("")
    assert runs.run_status(folder, child_code=130) == "killed"
    assert runs.run_status(folder, child_code=143) == "killed"
    assert runs.run_status(folder, child_code=1) == "failed"
    assert runs.run_status(folder) == "failed"  # an empty lock and no exit code: it ended with an error
    info = json.loads((folder / "run_info.json").read_text())
    (folder / "run_info.json").write_text(json.dumps({**info, "stopped": "SIGINT"}))
    assert runs.run_status(folder) == "killed"  # Ctrl-C in a terminal: core's clean stop says so in run_info


def test_metrics_are_incremental_and_skip_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1}\nnot json\n{"step": 2, "lo')
    rows, offset = runs.read_metrics(path)
    assert [r["step"] for r in rows] == [1]
    with open(path, "a") as handle:
        handle.write('ss": 0.5}\n')
    more, offset2 = runs.read_metrics(path, offset)
    assert [r["step"] for r in more] == [2] and offset2 == path.stat().st_size
    path.write_text('{"step": 1, "loss": 1}\n')  # a resume rewrote the file shorter: read from the start
    again, _ = runs.read_metrics(path, offset2)
    assert [r["step"] for r in again] == [1]


def test_run_detail_metrics_and_log(served: Served) -> None:
    status, run = served.json("/api/run?id=0/alpha")
    assert status == 200
    assert {"key": "max_train_steps", "value": 10, "source": "command line"} in run["config"]
    assert {"key": "learning_rate", "value": 0.001, "source": "default"} in run["config"]
    assert [c["name"] for c in run["checkpoints"]] == ["checkpoint-10"]
    assert run["validation"] == [{"step": 10, "name": "cat-64x64", "kind": "latents",
                                  "path": "validation/step-10/cat-64x64.npy"}]
    status, metrics = served.json("/api/metrics?id=0/alpha")
    assert len(metrics["rows"]) == 10 and metrics["offset"] > 0
    status, tail = served.json(f"/api/metrics?id=0/alpha&offset={metrics['offset']}")
    assert tail["rows"] == []
    status, log = served.json("/api/log?id=0/alpha")
    assert status == 200 and log["lines"] == []
    assert served.json("/api/run?id=0/nope")[0] == 404


def test_static_assets_and_options(served: Served) -> None:
    for path, kind in (("/", "text/html"), ("/static/app.js", "javascript"), ("/static/chart.js", "javascript"),
                       ("/static/style.css", "text/css")):
        status, headers, body = served.request(path)
        assert status == 200 and kind in headers["Content-Type"] and body
    assert served.request("/static/../plugin.py")[0] == 404
    status, data = served.json("/api/options")
    names = {o["name"]: o for o in data["options"]}
    assert names["learning_rate"]["owner"] == "core" and names["learning_rate"]["kind"] == "float"
    assert names["tinyflow_width"]["minimum"] == 4 and "tinyflow" in data["families"]
    assert any(o["choices"] for o in data["options"])


def test_file_serving_with_ranges(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_fake_run(root / "v", video=True)
    server, served = start_server(root)
    try:
        path = "/api/file?id=0/v&path=validation/step-10/dog-64x64.webm"
        status, headers, body = served.request(path)
        assert status == 200 and headers["Content-Type"] == "video/webm" and body[:4] == b"\x1a\x45\xdf\xa3"
        status, headers, part = served.request(path, headers={"Range": "bytes=2-5"})
        assert status == 206 and part == body[2:6] and headers["Content-Range"] == f"bytes 2-5/{len(body)}"
        assert served.request(path, headers={"Range": f"bytes={len(body) + 5}-"})[0] == 416
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("bad", ["../secret.json", "validation/../../secret.json", "/etc/passwd",
                                 "%2Fetc%2Fpasswd", "..%2Fsecret.json", "escape/secret.json", "link.json",
                                 "checkpoint-10", "run_info.json\\..", "~/x.json", "model.safetensors"])
def test_file_serving_refuses_escapes(served: Served, bad: str) -> None:
    (served.root / "secret.json").write_text("{}")
    (served.root / "alpha" / "escape").symlink_to(served.root, target_is_directory=True)
    (served.root / "alpha" / "link.json").symlink_to(served.root / "secret.json")
    (served.root / "alpha" / "model.safetensors").write_bytes(b"x")
    status, data = served.json(f"/api/file?id=0/alpha&path={bad}")
    assert status in (400, 403, 404) and "error" in data
    assert served.json("/api/file?id=0/alpha&path=run_info.json")[0] == 200


def test_safe_path_and_range_units(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    assert safe_path(tmp_path, "a.json") == (tmp_path / "a.json").resolve()
    for bad in ("", "/a.json", "../a.json", "./../a.json", "a\0.json"):
        with pytest.raises(Refused):
            safe_path(tmp_path, bad)
    assert byte_range("bytes=-4", 10) == (6, 9) and byte_range("bytes=3-", 10) == (3, 9) and byte_range(None, 10) is None


def test_loopback_refuses_foreign_host_header(served: Served) -> None:
    assert served.request("/api/runs", headers={"Host": "evil.example:8765"})[0] == 403  # DNS rebinding
    assert served.request("/api/runs", headers={"Host": "localhost:1"})[0] == 200


def test_token_required_off_loopback(tmp_path: Path) -> None:
    make_fake_run(tmp_path / "runs" / "alpha")
    server, served = start_server(tmp_path / "runs", host="0.0.0.0", token="s3cret-token")
    try:
        assert served.request("/api/runs")[0] == 403
        assert served.request("/")[0] == 403
        assert served.request("/api/runs?token=wrong")[0] == 403
        assert served.request("/api/file?id=0/alpha&path=run_info.json")[0] == 403
        status, headers, _ = served.request("/?token=s3cret-token")
        assert status == 200 and "vtrain_token=s3cret-token" in headers["Set-Cookie"]
        assert served.request("/api/runs", headers={"Cookie": "vtrain_token=s3cret-token"})[0] == 200
        assert served.request("/api/runs", headers={"X-Vtrain-Token": "s3cret-token"})[0] == 200
        assert served.request("/api/stop", {"id": "0/alpha"})[0] == 403
    finally:
        server.shutdown()
        server.server_close()


def test_command_prints_a_token_off_loopback(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "vtrain", "serve", "--host", "0.0.0.0", "--port", "0",
                             str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        url = next(line for line in lines if "open http" in line).split()[1]
        assert "?token=" in url and len(url.split("token=")[1]) >= 24
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    local = subprocess.Popen([sys.executable, "-m", "vtrain", "serve", "--port", "0", str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        lines = [local.stdout.readline() for _ in range(2)]
        url = next(line for line in lines if "open http" in line).split()[1]
        assert url.startswith("http://127.0.0.1:") and "token" not in url  # loopback by default, no token
    finally:
        local.terminate()
        local.wait(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "vtrain", "serve", str(tmp_path / "missing")], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "no such folder" in bad.stderr and "Traceback" not in bad.stderr


def test_posts_need_the_header_and_json(served: Served) -> None:
    status, _h, _b = served.request("/api/validate", {"config": {}}, headers={"X-Vtrain": ""})
    assert status == 403  # a cross-site form cannot set the header
    status, _h, _b = served.request("/api/validate", None, method="POST")
    assert status == 403
    assert served.json("/api/validate", {"config": "x"})[0] == 400
    assert served.json("/api/nothing", {})[0] == 404


def test_validate_reports_every_problem(served: Served) -> None:
    status, data = served.json("/api/validate", {"config": {"model_family": "tinyflow", "learning_rat": 1,
                                                            "tinyflow_width": 1, "max_train_steps": "many"}})
    assert status == 200 and not data["ok"]
    text = json.dumps(data["problems"])
    assert "learning_rat" in text and "tinyflow_width" in text and "max_train_steps" in text
    assert len(data["problems"]) >= 3
    ok = served.json("/api/validate", {"config": tinyflow_config(served.root / "x")})[1]
    assert ok["ok"] and {"key": "model_family", "value": "tinyflow", "source": "Runner(config)"} in ok["config"]


def test_start_refusals(served: Served, tmp_path: Path) -> None:
    status, data = served.json("/api/start", {"config": {"model_family": "tinyflow", "learning_rat": 1}})
    assert status == 409 and "learning_rat" in json.dumps(data["problems"])
    status, data = served.json("/api/start", {"config": tinyflow_config(tmp_path / "elsewhere")})
    assert status == 409 and "outside the folders" in data["problems"][0]["message"]
    status, data = served.json("/api/start", {"config": tinyflow_config(served.root / "alpha")})
    assert status == 409 and "earlier run" in data["problems"][0]["message"]
    status, data = served.json("/api/stop", {"id": "0/alpha"})
    assert status == 409 and "no run started from this dashboard" in data["problems"][0]["message"]
    status, data = served.json("/api/resume", {"id": "0/alpha"})
    assert status == 409 and "not started from the dashboard" in data["problems"][0]["message"]


def _wait(predicate, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_start_stop_resume_a_real_run(served: Served) -> None:
    config = tinyflow_config(served.root / "live", steps=100000)
    status, data = served.json("/api/start", {"config": config})
    assert status == 200 and data["id"] == "0/live"
    status, again = served.json("/api/start", {"config": config})
    assert status == 409 and "already writing" in again["problems"][0]["message"]  # never two runs in one folder
    _wait(lambda: bool(runs.checkpoints(served.root / "live")))  # metrics are flushed at checkpoints
    assert served.json("/api/run?id=0/live")[1]["status"] == "running"
    assert served.json("/api/metrics?id=0/live")[1]["rows"]
    assert served.json("/api/resume", {"id": "0/live"})[0] == 409  # still running
    assert served.json("/api/stop", {"id": "0/live"}) == (200, {"stopping": True})
    _wait(lambda: served.json("/api/run?id=0/live")[1]["status"] != "running")
    run = served.json("/api/run?id=0/live")[1]
    assert run["status"] == "killed" and run["controllable"] and run["summary"][0] == "vtrain run"
    assert any("SIGINT" in line for line in run["log"])  # the clean stop of Ctrl-C, with a checkpoint
    last = max(c["step"] for c in run["checkpoints"])
    assert last == run["step"]  # the stop wrote a checkpoint at the update it reached
    status, data = served.json("/api/resume", {"id": "0/live"})
    assert status == 200
    _wait(lambda: "resumed from" in (served.root / "live" / ".serve" / "log.txt").read_text()
          and any(c["step"] > last for c in served.json("/api/run?id=0/live")[1]["checkpoints"]))
    served.json("/api/stop", {"id": "0/live"})
    _wait(lambda: served.json("/api/run?id=0/live")[1]["status"] != "running")
    log = (served.root / "live" / ".serve" / "log.txt").read_text()
    assert "--resume_from_checkpoint latest" in log
    _wait(lambda: (served.root / "live" / ".serve" / "exit.json").is_file(), 30)
    later = Dashboard([served.root], "127.0.0.1", None)  # a restarted dashboard still knows it was stopped
    assert later.status(later.run_ref("0/live")) == "killed"


def test_video_fixture_is_a_real_video(tmp_path: Path) -> None:
    write_video(tmp_path / "v.webm")
    assert (tmp_path / "v.webm").stat().st_size > 500


def test_metrics_json_fast_path_and_nan(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.5}\n{"step": 2, "loss": 0.5}\n{"step": 3')
    body, offset = runs.metrics_json(path)
    assert json.loads(body) == [{"step": 1, "loss": 1.5}, {"step": 2, "loss": 0.5}]
    path.write_text('{"step": 1, "loss": NaN}\ngarbage\n{"step": 2, "loss": Infinity}\n')
    body, _ = runs.metrics_json(path)
    assert json.loads(body) == [{"step": 1, "loss": None}, {"step": 2, "loss": None}]  # valid JSON for the page


def test_big_files_stream_in_chunks_and_empty_files(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_fake_run(root / "v")
    blob = os.urandom(3 * (1 << 20) + 17)
    (root / "v" / "validation" / "step-10" / "big.mp4").write_bytes(blob)
    (root / "v" / "empty.txt").write_bytes(b"")
    server, served = start_server(root)
    try:
        status, _h, body = served.request("/api/file?id=0/v&path=validation/step-10/big.mp4")
        assert status == 200 and body == blob
        status, _h, body = served.request("/api/file?id=0/v&path=validation/step-10/big.mp4",
                                          headers={"Range": "bytes=1048570-2097160"})
        assert status == 206 and body == blob[1048570:2097161]
        assert served.request("/api/file?id=0/v&path=empty.txt")[:3:2] == (200, b"")
    finally:
        server.shutdown()
        server.server_close()
