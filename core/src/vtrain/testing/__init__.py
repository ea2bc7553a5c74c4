"""Testing helpers for vtrain and for third-party plugin authors.

- :mod:`vtrain.testing.tinyflow`: a tiny real flow-matching family that trains in seconds on CPU
  (registered as the ``tinyflow`` family through the ``vtrain`` entry point ``tinyflow``).
- :mod:`vtrain.testing.contract`: a contract test suite any model family can run against itself.
- :mod:`vtrain.testing.pytest_plugin`: fixtures (loaded automatically by pytest).
"""
