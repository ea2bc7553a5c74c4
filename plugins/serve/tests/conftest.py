"""Fixtures for the dashboard tests: a served folder with fake runs and a dashboard on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import Served, make_fake_run, start_server, stop_server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "runs"
    make_fake_run(root / "alpha")
    make_fake_run(root / "group" / "beta", steps=4, finished=False, torn=False)
    server, handle = start_server(root)
    yield handle
    stop_server(server, handle)

