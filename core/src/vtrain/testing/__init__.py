"""Testing helpers for vtrain and for third-party plugin authors (reference: ``docs/testing-plugins.md``).

- :mod:`vtrain.testing.tinyflow`: a tiny real flow-matching family that trains in seconds on CPU.
  It is a test plugin (:mod:`vtrain.testing.plugin`), never loaded in a user's run: tests load it
  with the ``tinyflow_plugin`` fixture, ``-p vtrain.testing.plugin`` or ``VTRAIN_PLUGINS``.
- :mod:`vtrain.testing.contract`: a contract test suite any model family can run against itself.
- :mod:`vtrain.testing.pytest_plugin`: fixtures (registered with pytest through the ``pytest11``
  entry point; none is autouse).
- :mod:`vtrain.testing.pytest_defaults`: opt-in session defaults (offline hub, tinyflow everywhere).
- :mod:`vtrain.testing.helpers`: ``train_steps`` and ``run_distributed``.
"""
