"""The source document's config.json and multidatabackend.json train to the end.

Only what the issue allows is changed: paths point at the tiny LTX-Video model, generated clips
and local services (a webhook receiver, a local hub endpoint), and the run is a few updates long
instead of 400000. Everything else is as the source writes it: fp8-torchao base (weight-only,
runs on CPU), LyCORIS lokr, adamw_bf16, bf16 mixed precision, EMA validated with ema_only,
wandb (offline), push to hub with checkpoints, 125-frame clips at 480 px pixel area, batch 8.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from receiver import Receiver
from test_hub import TOKEN, hub  # noqa: F401  (the local hub fixture)

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def source_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "examples" / "ltxvideo"))
    from make_demo_data import make_clips

    from vtrain_ltxvideo.tiny import make_pipeline_folder

    root = tmp_path_factory.mktemp("source")
    make_pipeline_folder(root / "model", seed=0)
    # 125 frames at 512x480: at least minimum_image_size 480 (pixel area), shrunk to 480 as configured
    make_clips(root / "datasets" / "disney-black-and-white", 8, 125, 480, 512, fps=25)
    return root


def test_source_config_trains_to_the_end(source_data: Path, tmp_path: Path, hub, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    backends = json.loads((FIXTURES / "source_multidatabackend.json").read_text())
    for backend in backends:
        for key in ("instance_data_dir", "cache_dir_vae", "cache_dir"):
            if key in backend:
                backend[key] = str(source_data / backend[key]) if key == "instance_data_dir" else str(tmp_path / backend[key])
    (tmp_path / "multidatabackend.json").write_text(json.dumps(backends))
    receiver = Receiver().start()
    (tmp_path / "webhook.json").write_text(json.dumps(
        {"webhook_type": "raw", "callback_url": f"{receiver.url}/hook", "log_level": "info"}))
    config = json.loads((FIXTURES / "source_config.json").read_text())
    config.update(pretrained_model_name_or_path=str(source_data / "model"), output_dir=str(tmp_path / "output"),
                  data_backend_config=str(tmp_path / "multidatabackend.json"),
                  lycoris_config=str(ROOT / "examples" / "ltxvideo" / "lycoris_config.json"),
                  webhook_config=str(tmp_path / "webhook.json"), max_train_steps=2)

    from vtrain.runner import Runner

    try:
        result = Runner.from_config(config).run()
    finally:
        receiver.stop()

    assert result.steps == 2 and result.final_loss is not None
    names = {p.name for p in result.model_paths}
    assert "lycoris_weights.safetensors" in names
    assert (result.output_dir / "ema" / "lycoris_weights.safetensors").is_file()
    videos = sorted(p.name for p in result.validation)
    assert videos and all(name.endswith(".mp4") for name in videos)
    assert {p.parent.name for p in result.validation} == {"step-0", "step-2"}  # disable_benchmark false
    events = [json.loads(r.body)["event"] for r in receiver.requests]
    assert events[0] == "run_start" and "validation" in events and events[-1] == "run_end"
    uploaded = {name for commit in hub.commits for name in commit["files"]}
    assert "README.md" in uploaded and any(name.endswith("lycoris_weights.safetensors") for name in uploaded)
    assert list(tmp_path.rglob("offline-run-*")), "wandb wrote no offline run"
    info = json.loads((result.output_dir / "run_info.json").read_text())
    assert info["config"]["base_model_precision"] == "fp8-torchao" and info["config"]["optimizer"] == "adamw_bf16"
    assert TOKEN not in (result.output_dir / "run_info.json").read_text()
