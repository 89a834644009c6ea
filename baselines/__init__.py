"""ackd-bench: baselines."""
