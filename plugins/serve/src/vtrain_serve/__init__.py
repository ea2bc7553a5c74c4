"""vtrain-serve: ``vtrain serve``, a local web dashboard for vtrain runs (standard library only)."""
