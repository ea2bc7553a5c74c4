"""vtrain-crepa plugin."""
