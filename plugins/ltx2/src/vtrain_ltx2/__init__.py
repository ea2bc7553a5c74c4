"""vtrain-ltx2: the LTX-2 family (joint audio + video)."""
