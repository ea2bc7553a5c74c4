"""Opt in to vtrain's test defaults for every test under tests/ and plugins/ (offline hub, the tinyflow family)."""

pytest_plugins = ["vtrain.testing.pytest_defaults"]
