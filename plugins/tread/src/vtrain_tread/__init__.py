"""vtrain-tread: TREAD token routing (arXiv 2501.04765) for families offering vtrain.family.TokenRouting."""
