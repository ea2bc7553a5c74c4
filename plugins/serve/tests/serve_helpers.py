"""Helpers for the dashboard tests: fake run folders, a real little video, a dashboard on a free port."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtrain_serve.app import Dashboard, make_server


@dataclass
class Served:
    """A running dashboard: its base URL, the dashboard object and the served folder."""

    url: str
    board: Dashboard
    root: Path

    def request(self, path: str, body: Any = None, headers: dict[str, str] | None = None,
                method: str | None = None) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "X-Vtrain": "1"} if body is not None else {}
        request = urllib.request.Request(self.url + path, data=data, headers={**sent, **(headers or {})},
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        status, _headers, raw = self.request(path, body, **kwargs)
        return status, json.loads(raw)


def write_video(path: Path, frames: int = 12) -> None:
    """A real little VP8 WebM (plays in Chromium without proprietary codecs)."""
    import imageio.v2 as imageio
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(str(path), fps=8, codec="libvpx", format="FFMPEG", macro_block_size=1,
                                output_params=["-b:v", "200k"])
    for index in range(frames):
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[:, : 4 + index * 5] = (40, 120, 220)
        writer.append_data(frame)
    writer.close()


def make_fake_run(folder: Path, steps: int = 10, finished: bool = True, torn: bool = True,
                  video: bool = False) -> Path:
    """A run folder as vtrain writes it: run_info.json, metrics.jsonl (a torn last line), checkpoints, validation."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {"config": {"model_family": "tinyflow", "max_train_steps": steps, "learning_rate": 0.001},
            "config_sources": {"model_family": "config.json", "max_train_steps": "command line"}}
    if finished:
        info["outputs"] = ["adapter_model.safetensors"]
    (folder / "run_info.json").write_text(json.dumps(info))
    lines = [json.dumps({"step": s, "loss": 1.0 / s, "loss/flow": 1.0 / s, "lr": 0.001, "grad_norm": 0.5,
                         "samples_per_second": 10.0}) for s in range(1, steps + 1)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n" + ('{"step": 99, "lo' if torn else ""))
    (folder / f"checkpoint-{steps}").mkdir(exist_ok=True)
    step_dir = folder / "validation" / f"step-{steps}"
    step_dir.mkdir(parents=True, exist_ok=True)
    (step_dir / "cat-64x64.npy").write_bytes(b"\x93NUMPY")
    if video:
        write_video(step_dir / "dog-64x64.webm")
    return folder


def start_server(root: Path, host: str = "127.0.0.1", token: str | None = None) -> tuple[Any, Served]:
    board = Dashboard([root], host, token)
    server = make_server(board, 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server, Served(f"http://127.0.0.1:{server.server_address[1]}", board, root)


def stop_server(server: Any, handle: Served) -> None:
    """Shut the server down and end any run a test left running (SIGINT, then SIGKILL)."""
    server.shutdown()
    server.server_close()
    for proc in handle.board.children.procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def tinyflow_config(output_dir: Path, steps: int = 40) -> dict[str, Any]:
    """A real tinyflow run (the test family of vtrain.testing) that writes metrics at every checkpoint."""
    return {"model_family": "tinyflow", "output_dir": str(output_dir), "max_train_steps": steps,
            "train_batch_size": 2, "learning_rate": 0.003, "mixed_precision": "no",
            "base_model_default_dtype": "fp32", "lora_rank": 4, "seed": 7, "tinyflow_num_samples": 16,
            "checkpoint_step_interval": 5, "checkpoints_total_limit": 2}
