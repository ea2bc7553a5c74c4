"""The training loop and what it needs close at hand (schedule, prompts, summary)."""
