"""benchmarks/gpu_check.py: its dry mode runs every CPU-reachable path on the tiny model and exits 0;
a failing path makes it exit 1 (and the others still run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))


def test_dry_run_passes_every_cpu_path(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "VTRAIN_DISABLE_PLUGIN_AUTOLOAD": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--model-dir", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("vtrain GPU check"):]
    import gpu_check

    for check in gpu_check.paths(dry=True):
        row = next(line for line in table.splitlines() if line.startswith(f"| {check.name} "))
        expected = "| skipped (" if check.cuda_only else "| ok |"
        assert expected in row, row
    assert table.count("| ok |") >= 11


def test_a_failing_path_makes_the_check_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import gpu_check

    ran: list[str] = []

    def fake_run(path: Any, model_dir: Path, work: Path, dry: bool) -> Any:
        ran.append(path.name)
        if path.name == "nf4-bnb base":
            raise RuntimeError("kernel missing")
        return gpu_check.Row(path.name, "ok", 0.1)

    monkeypatch.setattr(gpu_check, "run_path", fake_run)
    monkeypatch.setattr(gpu_check, "make_model", lambda dry, model_dir: tmp_path)
    assert gpu_check.main(["--dry", "--only", "base"]) == 1
    assert ran == ["int8-torchao base", "fp8-torchao base", "int8-quanto base", "nf4-bnb base"]
    assert "| nf4-bnb base      | FAIL (RuntimeError: kernel missing)" in capsys.readouterr().out
