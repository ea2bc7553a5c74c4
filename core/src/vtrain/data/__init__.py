"""Model-agnostic data: the dataset protocol, bucketed sampling, and (later) the local backends."""
