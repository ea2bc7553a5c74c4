"""benchmarks/bench_tread.py runs at a tiny size and reports a routed share below 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_runs_and_reports(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the script sets it on the CPU: restored afterwards
    import bench_tread

    monkeypatch.setattr(sys, "argv", ["bench_tread.py", "--layers", "4", "--frames", "9", "--height", "64",
                                      "--width", "128", "--steps", "2", "--warmup", "0", "--start", "1"])
    bench_tread.main()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["tokens"] == 2 * 2 * 4
    assert report["tread_token_share"] == pytest.approx((2 + 2 * 0.5) / 4)  # blocks 1 to -2 (1, 2) of 4 at half
    assert report["plain_s"] > 0 and report["routed_s"] > 0
