"""Plugin discovery, blocking, autoload, explicit loading and validation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vtrain.errors import PluginError
from vtrain.runner import Runner, load_plugins

VTRAIN = [sys.executable, "-m", "vtrain"]


def test_installed_third_party_plugin_is_found_through_its_entry_point(example_plugin: str) -> None:
    host, registry, _families, _opts = load_plugins()
    assert "example" in host.names()
    info = {i.name: i for i in host.describe()}["example"]
    assert info.distribution == "vtrain-example-plugin"
    assert info.version == "0.0.1"
    assert "compute_loss" in info.hooks
    assert registry["example_extra_loss"].owner == "example"


def test_third_party_hooks_run_in_training(tinyflow_config: dict, example_plugin: str) -> None:
    tinyflow_config.update(max_train_steps=3, example_extra_loss=0.5)
    result = Runner.from_config(tinyflow_config).run()
    steps = (result.output_dir / "example_plugin_steps.txt").read_text().split()
    assert steps == ["1", "2", "3"]
    import json

    logs = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("loss/example_l2" in entry for entry in logs)
    assert all(entry["loss"] > entry["loss/flow"] for entry in logs)


def test_blocking_a_plugin(tinyflow_config: dict, example_plugin: str) -> None:
    assert "example" in load_plugins()[0].names()
    host, registry, _f, _o = load_plugins(blocked=["example"])
    assert "example" not in host.names()
    assert "example_extra_loss" not in registry


def test_autoload_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTRAIN_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("VTRAIN_PLUGINS", raising=False)
    host, _r, families, _o = load_plugins()
    assert host.names() == ["core"]
    assert families == {}
    host, _r, families, _o = load_plugins(plugins=["vtrain.testing.plugin"])
    assert "tinyflow" in families


def test_autoload_off_then_explicit_plugin_module(tinyflow_config: dict, example_plugin: str) -> None:
    runner = Runner.from_config(tinyflow_config, autoload=False, plugins=["vtrain.testing.plugin"])
    assert "example" not in runner.host.names()
    assert runner.family.name == "tinyflow"


def test_misspelt_hook_is_rejected(tmp_path: Path) -> None:
    plugin = tmp_path / "typo_plugin.py"
    plugin.write_text(textwrap.dedent("""
        from vtrain import hookimpl

        @hookimpl
        def on_stp_end(run, step, logs):
            pass
    """))
    with pytest.raises(PluginError, match="on_stp_end"):
        load_plugins(plugin_files=[plugin])


def test_hook_with_unknown_argument_is_rejected(tmp_path: Path) -> None:
    plugin = tmp_path / "badargs.py"
    plugin.write_text("from vtrain import hookimpl\n\n@hookimpl\ndef on_step_end(run, stepz):\n    pass\n")
    with pytest.raises(PluginError, match="badargs"):
        load_plugins(plugin_files=[plugin])


def test_plugin_that_fails_to_import_names_plugin_and_distribution(tmp_path: Path) -> None:
    """A broken entry point: an installed distribution whose module raises on import."""
    site = tmp_path / "site"
    dist_info = site / "vtrain_broken-1.2.3.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: vtrain-broken\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text("[vtrain]\nbroken = vtrain_broken_mod\n")
    (site / "vtrain_broken_mod.py").write_text("raise ImportError('needs libfoo')\n")
    env_path = f"{site}"
    proc = subprocess.run([*VTRAIN, "plugins"], capture_output=True, text=True,
                          env={**_env(), "PYTHONPATH": env_path})
    assert proc.returncode == 2
    assert "broken" in proc.stderr and "vtrain-broken" in proc.stderr and "needs libfoo" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_plugins_lists_versions_hooks_and_options(example_plugin: str) -> None:
    proc = subprocess.run([*VTRAIN, "plugins"], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "example 0.0.1" in proc.stdout
    assert "example_extra_loss" in proc.stdout
    assert "families:" in proc.stdout and "tinyflow" in proc.stdout
    blocked = subprocess.run([*VTRAIN, "plugins", "-p", "no:example"], capture_output=True, text=True, env=_env())
    assert "example" not in blocked.stdout.split("families:")[0]


def test_plugin_file_on_the_command_line(tmp_path: Path) -> None:
    plugin = tmp_path / "myopts.py"
    plugin.write_text(textwrap.dedent("""
        from vtrain import hookimpl

        @hookimpl
        def add_options(registry):
            registry.add("my_key", "int", 3, "A key from a plugin file.")
    """))
    proc = subprocess.run([*VTRAIN, "plugins", "--plugin-file", str(plugin)], capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "my_key" in proc.stdout


def test_each_runner_has_its_own_plugin_manager(tinyflow_config: dict, example_plugin: str) -> None:
    first = Runner.from_config(tinyflow_config, blocked=["example"])
    second = Runner.from_config(tinyflow_config)
    assert first.host.pm is not second.host.pm
    assert "example" not in first.host.names() and "example" in second.host.names()


def test_a_user_environment_loads_no_test_plugin_and_no_test_family() -> None:
    """What ``make install`` gives a user: neither the example plugin nor the tinyflow family loads."""
    env = _env()
    env.pop("VTRAIN_PLUGINS", None)
    proc = subprocess.run([*VTRAIN, "plugins"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("families:")
    assert "example" not in listed[0] and "tinyflow" not in proc.stdout, proc.stdout
    options = subprocess.run([*VTRAIN, "options"], capture_output=True, text=True, env=env)
    assert "tinyflow_" not in options.stdout and "example_extra_loss" not in options.stdout


def test_vtrain_plugins_environment_variable_loads_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTRAIN_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VTRAIN_PLUGINS", "vtrain.testing.plugin")
    host, _r, families, _o = load_plugins(plugins=["vtrain.testing.plugin"])  # asked twice: loaded once
    assert "tinyflow" in families and host.names().count("vtrain.testing.plugin") == 1


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("VTRAIN_DISABLE_PLUGIN_AUTOLOAD", None)
    return env
