"""What `vtrain config` tells a user: overrides in --help, `unset` for keys without a value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VTRAIN = [sys.executable, "-m", "vtrain"]


def test_config_validate_help_shows_key_value_overrides() -> None:
    proc = subprocess.run([*VTRAIN, "config", "validate", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "vtrain config validate FILE" in proc.stdout and "[--key value ...]" in proc.stdout
    assert "--key value" in subprocess.run([*VTRAIN, "--help"], capture_output=True, text=True).stdout


def test_config_show_prints_unset_and_json_keeps_null(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model_family": "tinyflow", "output_dir": str(tmp_path / "o"), "max_train_steps": 2}))
    text = subprocess.run([*VTRAIN, "config", "show", "--config", str(path)], capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    line = next(line for line in text.stdout.splitlines() if line.startswith("resume_from_checkpoint "))
    assert " unset " in line and "null" not in text.stdout
    shown = subprocess.run([*VTRAIN, "config", "show", "--config", str(path), "--json"], capture_output=True, text=True)
    assert json.loads(shown.stdout)["resume_from_checkpoint"]["value"] is None
