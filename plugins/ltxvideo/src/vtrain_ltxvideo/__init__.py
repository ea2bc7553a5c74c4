"""vtrain-ltxvideo plugin."""
