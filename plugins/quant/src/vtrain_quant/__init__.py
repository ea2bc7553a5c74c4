"""vtrain-quant plugin."""
