"""vtrain-offload plugin."""
