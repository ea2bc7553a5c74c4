"""Shared test settings: keep torch to one thread so timings and results are stable on 2 cores.

The vtrain test defaults (offline hub, the ``tinyflow`` family) are opted into by the repository's
top-level ``conftest.py``. The test-only ``vtrain-example-plugin`` is never installed: the
``example_plugin`` fixture makes it discoverable through its entry point for one test only.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXAMPLE_PLUGIN = Path(__file__).parent / "plugins" / "vtrain-example-plugin"


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the example plugin's ``.dist-info`` (name, version, entry points from its
    pyproject.toml): on ``sys.path`` it looks to ``importlib.metadata`` exactly like an installed plugin."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((EXAMPLE_PLUGIN / "pyproject.toml").read_text())["project"]
    site = tmp_path_factory.mktemp("example-site")
    dist_info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project["entry-points"]
    (dist_info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
        for group, points in groups.items()))
    return site


@pytest.fixture
def example_plugin(example_plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``vtrain-example-plugin`` discoverable through its ``vtrain`` entry point in this test and in the
    ``vtrain`` subprocesses it starts (``PYTHONPATH``); returns the plugin's name."""
    paths = [str(example_plugin_site), str(EXAMPLE_PLUGIN / "src")]
    for path in reversed(paths):
        monkeypatch.syspath_prepend(path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])]))
    return "example"
