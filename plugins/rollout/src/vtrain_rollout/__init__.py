"""vtrain-rollout: scheduled sampling (rollout) and ReflexFlow as a ``compute_loss`` wrapper."""
